"""Coordinate check: μP passes and SP fails on the reference models and on a model written here,
and the update statistic catches vanishing updates."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from _helpers import COORD_FAST, charlm, gpt_coord, mlp_coord
from _models import nanogpt, nanogpt_eager
from torch import nn

from hptransfer import coord_check
from hptransfer.errors import CoordCheckError, OptimizerConfigError
from hptransfer.models import cnn, mlp
from hptransfer.parametrization import MuP, ParamInfo, available_parametrizations, register_parametrization
from hptransfer.tasks import get_task

# ---- verdicts on the reference models --------------------------------------------------


def test_mlp_mup_passes() -> None:
    res = mlp_coord("mup")
    assert res.passed, res.summary()
    assert res.failing == []
    assert {"input", "hidden.0", "readout", "(model)"} <= set(res.modules)
    # The shared activation module runs twice per forward: each call is its own coordinate.
    assert {"act", "act#2"} <= set(res.modules)


def test_mlp_sp_fails_and_names_the_modules() -> None:
    res = mlp_coord("sp")
    assert not res.passed
    failing = {m for m, *_ in res.failing}
    assert {"hidden.0", "readout"} <= failing
    assert "input" not in failing  # the first layer's Adam update does not depend on width
    _module, step, kind, slope = res.failing[0]
    assert step >= 1 and slope > res.tolerances["grow"] and kind in ("activation", "update")
    assert "hidden.0" in res.summary() and "FAIL" in res.summary()


def test_gpt_mup_passes() -> None:
    res = gpt_coord("mup")
    assert res.passed, res.summary()
    assert "lm_head" in res.fixed_size and "blocks.0.attn.q_proj" not in res.fixed_size


def test_gpt_sp_fails_and_names_the_modules() -> None:
    res = gpt_coord("sp")
    assert not res.passed
    failing = {m for m, *_ in res.failing}
    assert {"blocks.0.mlp.proj", "blocks.1.attn.o_proj", "lm_head"} <= failing
    assert "wte" not in failing
    assert "blocks.0.mlp.proj" in res.summary()


# ---- a model defined only here ---------------------------------------------------------


class GluMLP(nn.Module):
    """Pre-norm residual GLU MLP with RMSNorm and no biases anywhere."""

    def __init__(self, width: int, d_in: int = 16, n_classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Linear(d_in, width, bias=False)
        self.norm = nn.RMSNorm(width)
        self.gate = nn.Linear(width, 2 * width, bias=False)
        self.up = nn.Linear(width, 2 * width, bias=False)
        self.down = nn.Linear(2 * width, width, bias=False)
        self.norm_out = nn.RMSNorm(width)
        self.head = nn.Linear(width, n_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        z = self.norm(h)
        h = h + self.down(F.silu(self.gate(z)) * self.up(z))
        return self.head(self.norm_out(h))


def _glu_batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(32, 16, generator=gen)
    return x, (x[:, :5].argmax(dim=1))  # a learnable rule: index of the largest of 5 features


def test_user_glu_rmsnorm_model_passes_under_mup_with_batch_fn() -> None:
    res = coord_check(GluMLP, widths=(32, 64, 128, 256), batch_fn=_glu_batches, loss_fn=F.cross_entropy, **COORD_FAST)
    assert res.passed, res.summary()
    assert {"gate", "up", "down", "norm_out", "head"} <= set(res.modules)
    sp = coord_check(GluMLP, widths=(32, 64, 128, 256), parametrization="sp", batch_fn=_glu_batches,
                     loss_fn=F.cross_entropy, **COORD_FAST)
    assert not sp.passed and "down" in {m for m, *_ in sp.failing}


class NormedGluMLP(GluMLP):
    """GluMLP with torch's weight_norm on ``up`` and spectral_norm on ``down`` (torch.nn.utils.parametrize)."""

    def __init__(self, width: int) -> None:
        super().__init__(width)
        nn.utils.parametrizations.weight_norm(self.up)
        nn.utils.parametrizations.spectral_norm(self.down)


@pytest.mark.slow  # 15 s: 4 widths x 3 seeds of a parametrized GLU; the fast guards: the rest of this file
def test_weight_and_spectral_norm_parametrizations_pass_under_mup() -> None:
    """The parametrization modules output weights (entries 1/sqrt(m), updates 1/m under μP), not
    activations: they are left out, the layers that use them are measured."""
    res = coord_check(NormedGluMLP, widths=(32, 64, 128, 256), batch_fn=_glu_batches, loss_fn=F.cross_entropy,
                      **COORD_FAST)
    assert res.passed, res.summary()
    assert {"up", "down"} <= set(res.modules) and not any("parametrizations" in m for m in res.modules)
    sp = coord_check(NormedGluMLP, widths=(32, 64, 128, 256), parametrization="sp", batch_fn=_glu_batches,
                     loss_fn=F.cross_entropy, **COORD_FAST)
    assert not sp.passed


def test_mup_sgd_passes() -> None:
    res = coord_check(mlp, widths=(32, 64, 128, 256), task="classification", optimizer="sgd", lr=0.1, **COORD_FAST)
    assert res.passed, res.summary()


# ---- vanishing updates: caught by the update statistic only ---------------------------

if "test-mup-hidden-lr-too-small" not in available_parametrizations():

    @register_parametrization("test-mup-hidden-lr-too-small")
    class _HiddenLRTooSmall(MuP):
        """μP with the hidden Adam LR divided by the width multiplier once too often."""

        def lr_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
            mult = super().lr_mult(info, family, readout_hooked=readout_hooked)
            return mult / info.fan_in_mult if info.role == "hidden" else mult


def test_vanishing_hidden_update_is_caught() -> None:
    task = get_task("classification", d_in=3 * 8 * 8)

    def images(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = task.batch(step, 32)
        return x.view(-1, 3, 8, 8), y

    res = coord_check(cnn, widths=(16, 32, 64, 128), parametrization="test-mup-hidden-lr-too-small",
                      batch_fn=images, loss_fn=task.loss, **COORD_FAST)
    assert not res.passed
    kinds = {(m, k) for m, _, k, s in res.failing if s < 0}
    assert ("conv2", "update") in kinds
    # The plain activation statistic does not see it: conv2's mean |h| does not grow or shrink much.
    assert all(s <= res.tolerances["grow"] for s in res.slopes["conv2"])


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"widths": (64,)}, "at least two"),
        ({"widths": (64, -1)}, "at least two distinct positive"),
        ({"widths": (32, 64), "steps": 0}, "steps"),
        ({"widths": (32, 64), "seeds": ()}, "seeds"),
        ({"widths": (32, 64), "optimizer": "lion"}, "optimizer"),
        ({"widths": (32, 64), "tol_grow": -1.0}, "tol_grow"),
    ],
)
def test_bad_input_raises_coord_check_error(kwargs: dict, fragment: str) -> None:
    with pytest.raises(CoordCheckError, match=fragment):
        coord_check(mlp, task="classification", **kwargs)


def test_missing_data_source_raises() -> None:
    with pytest.raises(CoordCheckError, match="batch_fn"):
        coord_check(mlp, widths=(32, 64))


@pytest.mark.parametrize("factory, passes", [pytest.param(nanogpt, True, marks=pytest.mark.slow),  # 6 s; SDPA
                                             (nanogpt_eager, False)])  # passing: test_gpt_mup_passes
def test_attention_left_at_one_over_sqrt_d_fails_under_mup(factory, passes) -> None:
    # nanoGPT with 2 heads, so the head dim grows with width; the eager variant computes
    # softmax(q k^T / sqrt(d)) by hand, which hptransfer cannot rewrite: its logits grow.
    result = coord_check(factory, widths=(32, 64, 128, 256), task=charlm(), batch_size=8, seeds=(0, 1))
    logits = [m for m in result.modules if m.endswith("[attn scale x d]")]
    assert logits == ["transformer.h.0.attn[attn scale x d]", "transformer.h.1.attn[attn scale x d]"]
    assert result.passed is passes, result.failing[:3]
    if not passes:
        assert {m for m, *_ in result.failing} >= set(logits)


def test_optimizer_kwargs_reach_the_optimizer_and_unknown_ones_are_named() -> None:
    """An Adam eps far above the gradients (0.1) caps the hidden updates, which shrink with width
    under μP; the same check with the class's default eps passes (test_mlp_mup_passes)."""
    capped = coord_check(mlp, widths=(32, 64, 128, 256), task="classification", optimizer="adamw",
                         optimizer_kwargs={"eps": 0.1, "betas": (0.9, 0.95), "weight_decay": 0.1}, **COORD_FAST)
    assert not capped.passed and any(kind == "update" and slope < -0.35 for _, _, kind, slope in capped.failing)
    with pytest.raises(OptimizerConfigError, match=r"optimizer.kwargs \['beta'\] are not options of AdamW.*'betas'"):
        coord_check(mlp, widths=(32, 64, 128), task="classification", optimizer="adamw",
                    optimizer_kwargs={"beta": 0.9}, **COORD_FAST)


class MaskedLogitsMLP(GluMLP):
    """GluMLP whose logits for classes 3 and 4 are masked to -inf (action masking) by a module of its own."""

    def __init__(self, width: int) -> None:
        super().__init__(width)
        self.mask = _LogitMask()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask(super().forward(x))


class _LogitMask(nn.Module):
    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(torch.arange(logits.shape[-1]) >= 3, float("-inf"))


def _masked_batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = _glu_batches(step)[0]
    return x, x[:, :3].argmax(dim=1)


def test_masks_of_minus_inf_are_measured_on_their_finite_entries() -> None:
    """-inf by design (a mask, masked logits) is not a blow-up: those entries are left out."""
    res = coord_check(MaskedLogitsMLP, widths=(32, 64, 128, 256), batch_fn=_masked_batches, loss_fn=F.cross_entropy,
                      **COORD_FAST)
    assert res.passed, res.summary()
    # Its finite entries are the head's logits, so it scales like the head, not like inf.
    assert res.slopes["mask"][1:] == pytest.approx(res.slopes["head"][1:], abs=0.2)
    assert all(s == s and abs(s) < 1 for s in res.slopes["mask"] + res.update_slopes["mask"][1:])


class _BlowsUpAtWidth(GluMLP):
    """One logit overflows to inf at width 256 only, at init: a width effect the check must fail."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.head.in_features >= 256:
            out = out.index_fill(1, torch.tensor([0]), float("inf"))
        return out


def test_non_finite_outputs_that_are_not_a_fixed_mask_still_fail() -> None:
    res = coord_check(_BlowsUpAtWidth, widths=(32, 64, 128, 256), batch_fn=_glu_batches, loss_fn=F.cross_entropy,
                      steps=1, seeds=(0,))
    assert ("(model)", 0, "activation", math.inf) in res.failing  # at init, not only once training turns nan
    res = coord_check(GluMLP, widths=(32, 64), batch_fn=_glu_batches, loss_fn=F.cross_entropy, lr=1e30, steps=2,
                      seeds=(0,), optimizer="sgd")
    assert not res.passed  # diverged to nan after the first step


@pytest.mark.parametrize(("batch", "fragment"), [
    (lambda step: (torch.zeros(0, 16), torch.zeros(0, dtype=torch.long)),
     "'(model)' returned an empty output (shape (0, "),
    (lambda step: (torch.full((4, 16), float("nan")), torch.zeros(4, dtype=torch.long)), "nan values at width 32"),
])
def test_a_probe_that_measures_nothing_is_refused(batch, fragment) -> None:
    with pytest.raises(CoordCheckError, match=r"(?s)" + re.escape(fragment) + ".*Fix:"):
        coord_check(GluMLP, widths=(32, 64), batch_fn=batch, loss_fn=F.cross_entropy, steps=1, seeds=(0,))


class _RoutedMoE(nn.Module):
    """Top-1 routed experts, one of which (the last) the router can never pick: each expert sees
    a different set of tokens at every step, seed and width, and the last one sees none."""

    def __init__(self, width: int, n_exp: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(16, width)
        self.router = nn.Linear(width, n_exp)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)) for _ in range(n_exp))
        self.head = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        choice = self.router(h)[:, :-1].argmax(-1)
        y = torch.zeros_like(h)
        for i, expert in enumerate(self.experts):
            rows = choice == i
            y[rows] = expert(h[rows])
        return self.head(h + y)


def test_routed_experts_are_judged_by_activation_and_an_idle_one_is_left_out() -> None:
    kw = dict(widths=(32, 64, 128), batch_fn=_glu_batches, loss_fn=F.cross_entropy, steps=3, seeds=(0, 1))
    res = coord_check(_RoutedMoE, **kw)
    # Before: the routed rows at step t were compared with step 0's rows (other tokens), or the
    # idle expert's empty output aborted the check.
    assert res.passed, res.summary()
    assert res.extra["unmeasured"]["experts.3"] == "activation"  # never routed to: nothing measured
    assert res.extra["unmeasured"]["experts.0.2"] == "update"
    assert all(math.isnan(u) for u in res.update_slopes["experts.0.2"])
    assert "not measured at some step" in res.summary()
    sp = coord_check(_RoutedMoE, parametrization="sp", **kw)
    assert {"experts.0.2", "head"} <= {m for m, *_ in sp.failing}  # activations still catch SP inside experts


class _LoopedExperts(nn.Module):
    """One expert module applied to each expert's weight slice in turn (as DBRX does): its k-th call
    is whichever expert got tokens k-th."""

    def __init__(self, width: int, n_exp: int = 4) -> None:
        super().__init__()
        self.up = nn.Parameter(torch.randn(n_exp, 2 * width, width) / width ** 0.5)
        self.down = nn.Parameter(torch.randn(n_exp, width, 2 * width) / (2 * width) ** 0.5)

    def forward(self, h: torch.Tensor, e: int) -> torch.Tensor:
        return F.gelu(h @ self.up[e].T) @ self.down[e].T


class _DbrxStyleMoE(_RoutedMoE):
    def __init__(self, width: int, n_exp: int = 4) -> None:
        super().__init__(width, n_exp)
        self.experts = nn.ModuleList([nn.Identity()])  # unused: the looped module below does the work
        self.mlp = _LoopedExperts(width, n_exp)
        self.moe = nn.Identity()  # marks the sum of the experts, the coordinate that is judged

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        choice = self.router(h).argmax(-1)
        y = torch.zeros_like(h)
        for e in range(self.router.out_features):
            rows = choice == e
            if rows.any():
                y[rows] = self.mlp(h[rows], e)
        return self.head(h + self.moe(y))


def test_a_module_looped_over_experts_is_judged_through_their_sum() -> None:
    kw = dict(widths=(32, 64, 128), batch_fn=_glu_batches, loss_fn=F.cross_entropy, steps=3, seeds=(0, 1))
    res = coord_check(_DbrxStyleMoE, **kw)
    # Before: the calls' k-th expert differs between widths, so "mlp#2" compared different experts.
    assert res.extra["unmeasured"]["mlp#2"] == "routed calls"
    assert all(math.isnan(s) for s in res.slopes["mlp#2"])
    assert not any(m.startswith("mlp") for m, *_ in res.failing), res.summary()
    sp = coord_check(_DbrxStyleMoE, parametrization="sp", **kw)
    assert "moe" in {m for m, *_ in sp.failing}


class _TailWidens(nn.Module):
    """Reads the width beyond 32 and grows like width^2: empty at width 32, not routed."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed, self.tail, self.head = nn.Linear(16, width), nn.Identity(), nn.Linear(width, 5)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        self.tail(h[..., 32:] * (self.width / 32) ** 2)
        return self.head(h)


def test_an_output_empty_at_some_widths_only_still_fails() -> None:
    # Missing statistics are left out only for routed or idle modules (review finding: an empty
    # output at the smallest width passed as "not measured").
    res = coord_check(_TailWidens, widths=(32, 64, 128), batch_fn=_glu_batches, loss_fn=F.cross_entropy, steps=1,
                      seeds=(0,))
    assert ("tail", 0, "activation", math.inf) in res.failing and "tail" not in res.extra["unmeasured"]


def test_a_spec_a_train_fn_steps_itself_is_refused_with_the_fix(tmp_path) -> None:
    from hptransfer.recipe import parse_recipe
    from hptransfer.recipe._kwargs import optimizer_fields

    rec = parse_recipe({"name": "own", "model": {"name": "mlp"}, "task": {"train_fn": "math:sqrt"},
                        "widths": {"proxy": 16}, "train": {}})
    with pytest.raises(CoordCheckError, match="no optimizer or parametrization.*Fix: add `optimizer:`"):
        coord_check(rec.at(16), widths=(16, 32), task="classification")
    # muon_lr is relative to the LR the check runs at, not to a default
    assert optimizer_fields({"muon_lr": 0.02}, lr=0.01)["muon_lr_ratio"] == pytest.approx(2.0)


def test_a_warning_that_transfer_will_not_hold_fails_the_check():
    """A model whose last layer's output grows with width has no readout role: parametrize warns that μP
    transfer will not hold, and the check (which the activations alone might pass) must not PASS."""
    import torch
    from torch import nn

    from hptransfer.coord import coord_check

    def factory(width):
        return nn.Sequential(nn.Linear(8, int(width)), nn.ReLU(), nn.Linear(int(width), int(width)))

    data = torch.randn(4, 16, 8, generator=torch.Generator().manual_seed(0))
    res = coord_check(factory, widths=[16, 32, 64], steps=2, seeds=[0, 1],
                      batch_fn=lambda step: (data[step % 4], None), loss_fn=lambda out, _: out.pow(2).mean())
    assert not res.passed and any("will not hold" in w for w in res.extra["warnings"])
    assert "FAIL (parametrize warned): no parameter has the output (readout) role" in res.summary()
    again = coord_check(factory, widths=[16, 32, 64], steps=2, seeds=[0, 1],  # the warning shows once; still fails
                        batch_fn=lambda step: (data[step % 4], None), loss_fn=lambda out, _: out.pow(2).mean())
    assert not again.passed and again.extra["warnings"]
