"""Known breakers of μTransfer: each diagnosis fires on a set-up that has it and stays quiet otherwise."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from hptransfer.diagnostics import diagnose
from hptransfer.recipe import load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[2]

GPT = {
    "name": "g", "model": {"name": "gpt", "kwargs": {"n_layer": 1, "n_head": 2, "norm": "rmsnorm", "glu": True}},
    "task": {"name": "charlm", "kwargs": {"block_size": 16}},
    "train": {"batch_size": 4, "steps": 5}, "widths": {"proxy": 32, "target": 256},
    "search": {"lr": {"type": "log_float", "low": 1e-4, "high": 1e-1}},
}


def codes(data: dict) -> set[str]:
    return {d.code for d in diagnose(parse_recipe(copy.deepcopy(data)))}


def test_quiet_on_the_shipped_mlp_recipe_and_only_gains_on_the_gpt_recipe() -> None:
    assert diagnose(load_recipe(ROOT / "recipes" / "mlp_quickstart.yaml")) == []
    # The reference GPT keeps trainable LayerNorm gains on purpose (its transfer is verified in
    # docs/verification_results.md); the diagnosis says so, nothing else fires.
    assert {d.code for d in diagnose(load_recipe(ROOT / "recipes" / "gpt_charlm.yaml"))} == {"norm-gains"}


def test_norm_gains_fire_unless_frozen_or_scaled() -> None:
    found = diagnose(parse_recipe(copy.deepcopy(GPT)))
    gains = [d for d in found if d.code == "norm-gains"]
    assert gains and "arXiv:2404.05728" in gains[0].citation and "gains: freeze" in gains[0].fix
    assert "blocks.0.ln1.weight" in gains[0].message
    for mode in ("freeze", "scaled"):
        assert "norm-gains" not in codes({**GPT, "parametrization": {"gains": mode}})


def test_adam_eps_fires_when_it_would_cap_the_targets_updates() -> None:
    loud = codes({**GPT, "optimizer": {"eps": 1e-4}})
    assert "adam-eps" in loud
    assert "adam-eps" not in codes({**GPT, "optimizer": {"eps": 1e-12}})
    assert "adam-eps" not in codes({**GPT, "optimizer": {"name": "sgd", "eps": 1e-4}})


def test_horizon_fires_when_target_batch_or_steps_differ() -> None:
    assert "horizon" in codes({**GPT, "transfer": {"steps": 50}})
    assert "horizon" in codes({**GPT, "transfer": {"batch_size": 8}})
    assert "horizon" not in codes({**GPT, "transfer": {"steps": 5, "batch_size": 4}})


HAND_WRITTEN = '''
import math, torch
from torch import nn

class SelfAttention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # 1/sqrt(d), by hand
        return self.out(att @ v)

class Net(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inp, self.attn, self.head = nn.Linear(32, width), SelfAttention(width), nn.Linear(width, 10)

    def forward(self, x):
        h = self.inp(x).unsqueeze(1).expand(-1, 4, -1)
        return self.head(self.attn(h).mean(1))

def build(width):
    return Net(width)
'''


def test_attention_left_at_one_over_sqrt_d_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "handwritten_attn.py").write_text(HAND_WRITTEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = {"name": "h", "model": {"factory": "handwritten_attn:build"}, "task": {"name": "classification"},
            "train": {"batch_size": 8, "steps": 3}, "widths": {"proxy": 32, "target": 128},
            "search": {"lr": {"type": "log_float", "low": 1e-4, "high": 1e-1}}}
    found = [d for d in diagnose(parse_recipe(data)) if d.code == "attention-scale"]
    assert found and "attn" in found[0].message and "scaled_dot_product_attention" in found[0].fix
    # The reference GPT computes attention with SDPA, which the rewrite scales: quiet.
    assert "attention-scale" not in codes(GPT)


def test_attention_is_not_judged_without_an_input_to_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe with its own train_fn has no task input: nothing traced the SDPA attention yet (the
    model traces it on its first forward), so it must not be called unscaled."""
    (tmp_path / "own_loop.py").write_text("def train(hp, *, width, seed, report):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    own = {**GPT, "model": {**GPT["model"], "kwargs": {**GPT["model"]["kwargs"], "vocab_size": 64}},
           "task": {"train_fn": "own_loop:train"}}
    for proxy in (32, 64):  # at the base width (no trace pending) and above it (trace pending)
        found = codes({**own, "widths": {"proxy": proxy, "target": 256}, "parametrization": {"base_width": 32}})
        assert "attention-scale" not in found and "norm-gains" in found
