"""μP's per-group LR ratios through other people's optimizers and schedulers: a plain optimizer on
a μP model is stopped at its first step, schedulers that flatten the ratios are named in one
warning, and ``hpt.lr_scheduler`` keeps them."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from _helpers import hpt_warns, no_warnings
from torch.optim import lr_scheduler as sched

import hptransfer as hpt
from hptransfer.errors import OptimizerConfigError
from hptransfer.models import mlp
from hptransfer.training import Schedule

X, Y = torch.randn(16, 32), torch.randint(0, 10, (16,))


def _mup(width: int = 64, parametrization: str = "mup"):
    torch.manual_seed(0)
    return hpt.parametrize(lambda w: mlp(w, d_in=32, n_classes=10), width=width, base_width=16,
                           parametrization=parametrization)


def _steps(model, opt, scheduler=None, n: int = 1, plateau: bool = False) -> None:
    for _ in range(n):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), Y)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step(1.0) if plateau else scheduler.step()


def test_a_plain_optimizer_on_a_mup_model_stops_at_its_first_step_naming_the_fix():
    model = _mup()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(OptimizerConfigError, match=r"hidden.*0\.25x.*it gets 1x.*hptransfer\.optimizer.*hf\.Trainer"):
        _steps(model, opt)
    assert all(p.grad is not None for p in model.parameters())  # stopped before the update


@pytest.mark.parametrize("case", ["sp-model", "same-mult-subset", "hpt-groups", "mup-sgd-ok-groups"])
def test_optimizers_whose_lrs_agree_with_the_table_train_silently(case):
    model = _mup(parametrization="sp" if case == "sp-model" else "mup")
    if case == "sp-model":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    elif case == "same-mult-subset":  # a linear probe: only the readout trains, and one LR is right for it
        opt = torch.optim.AdamW(model.readout.parameters(), lr=1e-3)
    elif case == "hpt-groups":
        opt = hpt.optimizer(model, torch.optim.AdamW, lr=1e-3)
    else:  # groups written by hand with the table's LRs, without lr_mult
        opt = torch.optim.SGD([{"params": g["params"], "lr": g["lr"]}
                               for g in hpt.param_groups(model, lr=0.1, optimizer="sgd")], lr=0.1)
    with no_warnings():
        _steps(model, opt, n=3)


def test_a_deep_copy_of_the_model_keeps_its_table_and_its_lrs():
    model = copy.deepcopy(_mup())
    opt = hpt.optimizer(model, torch.optim.Adam, lr=1e-3)
    assert sorted({round(g["lr_mult"], 6) for g in opt.param_groups}) == [0.25, 1.0]
    with no_warnings():
        _steps(model, opt, n=2)


SAFE = {
    "LambdaLR": lambda o: sched.LambdaLR(o, lambda s: 0.9 ** s),
    "LinearLR": lambda o: sched.LinearLR(o, start_factor=0.1, total_iters=5),
    "StepLR": lambda o: sched.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda o: sched.MultiStepLR(o, milestones=[3, 7], gamma=0.3),
    "ConstantLR": lambda o: sched.ConstantLR(o, factor=0.5, total_iters=4),
    "ChainedScheduler": lambda o: sched.ChainedScheduler([sched.ConstantLR(o, factor=0.5, total_iters=4),
                                                          sched.ExponentialLR(o, gamma=0.9)]),
    "ExponentialLR": lambda o: sched.ExponentialLR(o, gamma=0.8),
    "CosineAnnealingLR(eta_min=0)": lambda o: sched.CosineAnnealingLR(o, T_max=10),
    "PolynomialLR": lambda o: sched.PolynomialLR(o, total_iters=10, power=2.0),
    "OneCycleLR(max_lr=list)": lambda o: sched.OneCycleLR(o, max_lr=[g["lr"] for g in o.param_groups],
                                                          total_steps=12),
    "SequentialLR(warmup, cosine)": lambda o: sched.SequentialLR(
        o, [sched.LinearLR(o, start_factor=0.1, total_iters=3), sched.CosineAnnealingLR(o, T_max=9)], milestones=[3]),
    "hpt.lr_scheduler": lambda o: hpt.lr_scheduler(o, Schedule(warmup=0.2, min_lr_frac=0.1), total_steps=12),
}
BREAKERS = {
    "OneCycleLR": lambda o: sched.OneCycleLR(o, max_lr=1e-2, total_steps=12),
    "CyclicLR": lambda o: sched.CyclicLR(o, base_lr=1e-4, max_lr=1e-2, step_size_up=3),
    "CosineAnnealingLR": lambda o: sched.CosineAnnealingLR(o, T_max=10, eta_min=1e-4),
    "CosineAnnealingWarmRestarts": lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=5, eta_min=1e-4),
    "ReduceLROnPlateau": lambda o: sched.ReduceLROnPlateau(o, factor=0.1, patience=0, min_lr=1e-4),
}


@pytest.mark.parametrize("name", SAFE)
def test_schedulers_that_scale_every_group_alike_keep_the_ratios_without_a_word(name):
    model = _mup()
    opt = hpt.optimizer(model, torch.optim.Adam, lr=1e-3)
    s = SAFE[name](opt)
    with no_warnings(python=False):  # torch's own "step order" warnings are not ours to judge
        _steps(model, opt, s, n=12)
    lrs = {round(g["lr_mult"], 6): g["lr"] for g in opt.param_groups}
    assert lrs[0.25] == pytest.approx(0.25 * lrs[1.0], rel=1e-6)


@pytest.mark.parametrize("name", BREAKERS)
def test_schedulers_that_flatten_the_ratios_are_named_in_one_warning(name, caplog):
    model = _mup()
    opt = hpt.optimizer(model, torch.optim.Adam, lr=1e-3)
    s = BREAKERS[name](opt)
    with caplog.at_level(logging.WARNING, logger="hptransfer"), hpt_warns(rf"drifted.*changed by {name}\b"):
        _steps(model, opt, s, n=12, plateau=name == "ReduceLROnPlateau")
    assert sum("drifted" in r.getMessage() for r in caplog.records) == 1  # once per optimizer, not per step


def test_lr_scheduler_follows_the_schedule_in_every_group_and_round_trips():
    model = _mup()
    opt = hpt.optimizer(model, torch.optim.AdamW, lr=1e-3)
    schedule = Schedule(warmup=0.25, decay="cosine", min_lr_frac=0.1)
    s = hpt.lr_scheduler(opt, schedule, total_steps=8)
    base = [g["lr"] for g in opt.param_groups]  # after construction: factor(0) applied
    got = []
    for _ in range(8):
        got.append([g["lr"] for g in opt.param_groups])
        _steps(model, opt)
        s.step()
    init = [g["initial_lr"] for g in opt.param_groups]
    for step, lrs in enumerate(got):
        assert lrs == pytest.approx([lr0 * schedule.factor(step, 8) for lr0 in init], rel=1e-9)
    assert base == pytest.approx([lr0 * schedule.factor(0, 8) for lr0 in init])
    state = s.state_dict()
    fresh = hpt.lr_scheduler(hpt.optimizer(_mup(), torch.optim.AdamW, lr=1e-3), Schedule(), total_steps=3)
    fresh.load_state_dict(state)
    assert fresh.lr_lambdas[0].total == 8 and fresh.lr_lambdas[0].schedule == schedule
    assert hpt.lr_scheduler(opt, lambda step: 0.5).get_last_lr() == pytest.approx([lr0 * 0.5 for lr0 in init])


def test_lr_scheduler_refuses_a_schedule_without_its_length_or_a_bad_factor():
    opt = hpt.optimizer(_mup(), torch.optim.AdamW, lr=1e-3)
    with pytest.raises(OptimizerConfigError, match="needs total_steps"):
        hpt.lr_scheduler(opt, Schedule())
    with pytest.raises(OptimizerConfigError, match="neither"):
        hpt.lr_scheduler(opt, 0.5)  # type: ignore[arg-type]
    with pytest.raises(OptimizerConfigError, match="finite number"):
        hpt.lr_scheduler(opt, lambda step: float("nan"))
