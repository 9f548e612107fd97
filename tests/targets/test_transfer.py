"""Transfer: target.yaml content, provenance, load(), horizon warnings and the opt-in laws."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from _helpers import hpt_warns, transfer_recipe

import hptransfer
from hptransfer.errors import HPTransferError, StorageError
from hptransfer.models import mlp
from hptransfer.parametrization import param_groups, parametrize
from hptransfer.recipe import parse_recipe
from hptransfer.targets._transfer import LAW_CITATIONS, law_factor
from hptransfer.tasks import get_task


def test_transfer_writes_targets_with_groups_and_provenance(tuned: tuple) -> None:
    rec, res = tuned
    targets = hptransfer.transfer(rec, quiet=True)
    assert [t.width for t in targets] == [32, 64]
    assert targets[1].path.name == "target.yaml" and targets[0].path.name == "target_w32.yaml"
    assert (rec.run_dir / "target_w64.yaml").exists()
    cfg = yaml.safe_load(targets[1].path.read_text())
    assert cfg["hptransfer_target"] == 2
    spec = cfg["spec"]
    assert spec["width"] == 64 and spec["optimizer"]["lr"] == pytest.approx(res.best_params["lr"])
    prov = cfg["provenance"]
    assert prov["study"] == "tiny" and prov["trial"] == res.best_trial and prov["recipe_hash"] == rec.hash
    assert prov["hptransfer_version"] == hptransfer.__version__ and prov["seeds"] == [0]
    assert spec["parametrization"] == {
        "name": "mup", "base_width": 16, "zero_readout": False, "zero_query": False,
        "output_mult": pytest.approx(res.best_params["output_mult"]), "attn_mult": 1.0, "base_depth": None,
        "init_std": None, "gains": "train", "options": {}}
    assert cfg["base_shapes"]["hidden.0.weight"] == [16, 16]
    # μP Adam: hidden weights get lr / (64/16); input-like parameters keep the base LR.
    lrs = {n: g["lr"] for g in cfg["groups"] for n in g["params"]}
    lr = spec["optimizer"]["lr"]
    assert lrs["hidden.0.weight"] == pytest.approx(lr / 4) and lrs["input.weight"] == pytest.approx(lr)
    assert cfg["transfer"]["warnings"] == []


def test_load_rebuilds_model_and_optimizer(tuned: tuple) -> None:
    rec, _ = tuned
    (target,) = hptransfer.transfer(rec, target_widths=64, quiet=True)
    model, opt = hptransfer.load(target.path)
    assert model.width == 64 and isinstance(opt, torch.optim.AdamW)
    want = {n: g["lr"] for g in target.config["groups"] for n in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    for g in opt.param_groups:
        for p in g["params"]:
            assert g["lr"] == pytest.approx(want[names[id(p)]])
    loaded = hptransfer.load(target.path, seed=0)
    assert loaded.schedule is not None and loaded.schedule.warmup == 0.0
    out = loaded.model(torch.randn(3, 32))
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_load_hands_back_a_torch_scheduler_that_follows_the_recorded_schedule(tuned: tuple) -> None:
    rec, _ = tuned
    (target,) = hptransfer.transfer(rec, target_widths=64, quiet=True)
    loaded = hptransfer.load(target.path)
    sched, steps = loaded.scheduler, loaded.spec.train.steps
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR) and loaded.scheduler is sched  # built once
    peak = [g["initial_lr"] for g in loaded.optimizer.param_groups]
    for step in range(steps):
        factor = loaded.schedule.factor(step, steps)
        assert [g["lr"] for g in loaded.optimizer.param_groups] == pytest.approx([lr * factor for lr in peak])
        loaded.optimizer.step()
        sched.step()
    assert loaded.schedule.factor(steps - 1, steps) == pytest.approx(loaded.schedule.min_lr_frac)


def test_load_rejects_a_different_architecture(tuned: tuple, tmp_path: Path) -> None:
    rec, _ = tuned
    (target,) = hptransfer.transfer(rec, target_widths=64, quiet=True)
    with pytest.raises(HPTransferError, match="different model"):
        hptransfer.load(target.path, factory=lambda w: mlp(w, depth=4))
    bad = tmp_path / "not_target.yaml"
    bad.write_text("a: 1\n")
    with pytest.raises(HPTransferError, match="not a target file"):
        hptransfer.load(bad)


def test_changed_batch_or_steps_warns_and_law_is_opt_in(tuned: tuple, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    rec, res = tuned
    with hpt_warns("μP transfers across WIDTH only"):
        (t,) = hptransfer.transfer(rec, target_widths=64, steps=80, out=tmp_path / "a.yaml")
    assert t.values["lr"] == pytest.approx(res.best_params["lr"])  # no law: values unchanged
    with hpt_warns("arXiv:2503.04715"):
        (t,) = hptransfer.transfer(rec, target_widths=64, steps=80, law="step_law", out=tmp_path / "b.yaml",
                                   quiet=True)
    assert t.values["lr"] == pytest.approx(res.best_params["lr"] * 4 ** 0.307)
    assert t.config["transfer"]["citation"] == LAW_CITATIONS["step_law"]
    assert law_factor("deepseek", 1.0, 4.0) == pytest.approx(4 ** -0.125)
    assert law_factor("none", 1.0, 4.0) == 1.0


def test_python_api_without_recipe(tmp_path: Path) -> None:
    """A factory, a training function and a search space: tune, transfer and load in a few lines."""
    task = get_task("classification", n_train=512, n_val=256)

    def train_fn(hp: dict, *, width: int, report: object) -> float:
        model = parametrize(mlp, width=width, base_width=16, output_mult=hp["output_mult"])
        opt = torch.optim.AdamW(param_groups(model, lr=hp["lr"]))
        for step in range(15):
            x, y = task.batch(step, 32)
            loss = task.loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            report(step, loss.item())
        return task.eval_loss(model)

    space = {"lr": ("log_float", 1e-3, 1e-1), "output_mult": ("log_float", 0.5, 2.0)}
    res = hptransfer.tune(train_fn, space=space, width=16, steps=15, trials=3, sampler="random",
                          storage=str(tmp_path / "s.journal"), quiet=True)
    assert set(res.best_values) == {"lr", "output_mult"}  # what train_fn was handed, and nothing else
    (target,) = hptransfer.transfer(res, target_widths=64, factory=mlp, base_width=16, out=tmp_path / "t.yaml")
    spec = target.config["spec"]
    assert spec["model"]["factory"] == "hptransfer.zoo.models:mlp"
    # train_fn built its own AdamW: no optimizer or schedule is invented for it, none is recorded
    assert spec["optimizer"] is None and spec["schedule"] is None and spec["extra"] == {"lr": res.best_values["lr"]}
    assert spec["parametrization"]["output_mult"] == pytest.approx(res.best_values["output_mult"])
    loaded = hptransfer.load(target.path)
    assert loaded.model.width == 64 and math.isfinite(float(task.eval_loss(loaded.model)))
    opt = hptransfer.optimizer(loaded.model, torch.optim.AdamW, lr=loaded.values["lr"])  # as train_fn builds it
    assert {g["lr"] for g in opt.param_groups} == {loaded.values["lr"], loaded.values["lr"] / 4}


def test_transfer_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no study named"):
        hptransfer.transfer(parse_recipe(transfer_recipe(tmp_path, out=str(tmp_path / "empty"))), quiet=True)
