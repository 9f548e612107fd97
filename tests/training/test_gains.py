"""parametrization.gains: norm gains trained, frozen (non-parametric norms) or trained with a 1/width LR."""

from __future__ import annotations

import pytest
import torch

from hptransfer.recipe import parse_recipe
from hptransfer.training import build, train_spec
from hptransfer.training._gains import norm_gains

DATA = {
    "name": "g", "model": {"name": "gpt", "kwargs": {"n_layer": 1, "n_head": 2, "norm": "layernorm"}},
    "task": {"name": "charlm", "kwargs": {"block_size": 16}},
    "train": {"batch_size": 4, "steps": 3}, "widths": {"proxy": 32, "target": 128},
    "search": {"lr": {"type": "log_float", "low": 1e-4, "high": 1e-1}},
}


def _lrs(mode: str) -> tuple[dict[str, float], torch.nn.Module]:
    rec = parse_recipe({**DATA, "parametrization": {"gains": mode}})
    b = build(rec.at(128, {"lr": 0.01}))
    return {n: g["lr"] for g in b.optimizer.param_groups for n in g["param_names"]}, b.model


def test_gains_are_found_by_module_type() -> None:
    _, model = _lrs("train")
    gains = norm_gains(model)
    assert "blocks.0.ln1.weight" in gains and "blocks.0.ln1.bias" in gains and "ln_f.weight" in gains
    assert not any("attn" in g or "mlp" in g for g in gains)


def test_train_freeze_and_scaled() -> None:
    trained, _ = _lrs("train")
    assert trained["blocks.0.ln1.weight"] == pytest.approx(0.01)
    frozen, model = _lrs("freeze")
    assert "blocks.0.ln1.weight" not in frozen and not model.blocks[0].ln1.weight.requires_grad
    scaled, _ = _lrs("scaled")
    assert scaled["blocks.0.ln1.weight"] == pytest.approx(0.01 * 32 / 128)
    # Everything else is untouched by the gains setting.
    assert {k: v for k, v in scaled.items() if "ln" not in k} == {k: v for k, v in trained.items() if "ln" not in k}


def test_frozen_gains_stay_at_their_init_through_training() -> None:
    rec = parse_recipe({**DATA, "parametrization": {"gains": "freeze"}})
    res = train_spec(rec.at(64, {"lr": 0.01}))
    assert not res.diverged and res.steps == 3
    b = build(rec.at(64, {"lr": 0.01}))
    x, y = b.task.batch(0, 4)
    b.task.loss(b.model(x), y).backward()
    b.optimizer.step()
    assert torch.equal(b.model.blocks[0].ln1.weight, torch.ones_like(b.model.blocks[0].ln1.weight))
