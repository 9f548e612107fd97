"""Helpers shared by several test modules (``tests/`` is on ``sys.path``: pyproject's ``pythonpath``).

Test modules import from here, never from each other.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from hptransfer import coord_check
from hptransfer.check._check import check_grid
from hptransfer.models import gpt, mlp
from hptransfer.tasks import get_task
from hptransfer.training import TrainResult

ROOT = Path(__file__).resolve().parents[1]  # the repository
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# ---- hptransfer's warnings: records of the "hptransfer" logger ---------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


@contextlib.contextmanager
def hpt_warns(match: str | None = None) -> Iterator[_Records]:
    """Assert that hptransfer logged a warning matching ``match`` (a regex, searched) inside the block."""
    got = _Records()
    logger = logging.getLogger("hptransfer")
    logger.addHandler(got)
    try:
        yield got
    finally:
        logger.removeHandler(got)
    found = got.warnings()
    assert any(match is None or re.search(match, m, re.S) for m in found), \
        f"no hptransfer warning matching {match!r}; logged: {found}"


@contextlib.contextmanager
def no_warnings(python: bool = True) -> Iterator[_Records]:
    """Assert that hptransfer logged no warning inside the block (and, with ``python``, that no Python
    warning was issued either: they are turned into errors)."""
    got = _Records()
    logger = logging.getLogger("hptransfer")
    logger.addHandler(got)
    try:
        with warnings.catch_warnings():
            if python:
                warnings.simplefilter("error")
            yield got
    finally:
        logger.removeHandler(got)
    assert not got.warnings(), f"hptransfer logged warning(s): {got.warnings()}"

# ---- the transfer check on a synthetic loss bowl -----------------------------------------------

LR_GRID = [2.0 ** (k / 2) for k in range(-28, -11)]  # 2^-14 .. 2^-6, half-octave steps


@dataclass
class BowlRunner:
    """Loss = 1 - 0.01 log2(width) + 0.05 (log2 lr - opt)^2 with opt = -9 + drift * log2(width/64);
    SP drifts -0.75 octave per doubling, μP does not; diverges 3 octaves above the optimum."""

    drifts: dict
    noise: float = 0.002
    calls: int = 0
    penalty: float = math.log(10)

    def fingerprint(self) -> str:
        return repr(sorted(self.drifts.items()))

    def __call__(self, parametrization, width, seed, hps):
        self.calls += 1
        x = math.log2(hps["lr"])
        opt = -9.0 + self.drifts[parametrization] * math.log2(width / 64)
        if x > opt + 3:
            return TrainResult(diverged=True, reason="loss above 3 x its start", val_loss=math.inf)
        rng = np.random.default_rng([width, seed, int(1000 * x) % 100000])
        loss = 1.0 - 0.01 * math.log2(width) + 0.05 * (x - opt) ** 2 + rng.normal(0, self.noise)
        return TrainResult(val_loss=float(loss), steps=10, seconds=0.001)


def bowl_check(runner=None, **kw):
    """``check_grid`` on a :class:`BowlRunner` (SP drifting, μP not) at widths 64..512, two seeds;
    SP is expected to fail and μP to pass unless ``expect`` says otherwise."""
    args = {"widths": [64, 128, 256, 512], "grid": {"lr": LR_GRID}, "seeds": [0, 1],
            "parametrizations": ["sp", "mup"], "expect": {"sp": "fail", "mup": "pass"}, "n_boot": 200,
            "workers": 1}  # in this process (the default, auto, spawns one per core with a storage)
    args.update(kw)
    return check_grid(runner or BowlRunner({"sp": -0.75, "mup": 0.0}), **args)


# ---- coordinate checks on the reference models (cached: several modules read the same runs) ----

COORD_FAST = {"steps": 2, "seeds": (0, 1)}


@functools.cache
def charlm():
    # A short context and a small corpus keep the GPT runs to a few seconds.
    return get_task("charlm", block_size=16, n_bytes=200_000)


@functools.cache
def mlp_coord(parametrization: str):
    return coord_check(mlp, widths=(32, 64, 128, 256), parametrization=parametrization,
                       task=get_task("classification"), **COORD_FAST)


@functools.cache
def gpt_coord(parametrization: str):
    task = charlm()
    return coord_check(functools.partial(gpt, **task.model_kwargs()), widths=(32, 64, 128),
                       parametrization=parametrization, task=task, batch_size=8, **COORD_FAST)


# ---- models for the parametrization layer ------------------------------------------------------


class GLUMLP(nn.Module):
    """A GLU MLP with RMSNorm and no biases, expansion factor 8/3 (not a multiple of width)."""

    def __init__(self, width: int, d_in: int = 12, n_out: int = 5):
        super().__init__()
        hidden = int(8 * width / 3)
        self.embed = nn.Linear(d_in, width, bias=False)
        self.norm = nn.RMSNorm(width)
        self.up = nn.Linear(width, hidden, bias=False)
        self.gate = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)
        self.head = nn.Linear(width, n_out, bias=False)

    def forward(self, x):
        h = self.embed(x)
        z = self.norm(h)
        h = h + self.down(F.silu(self.gate(z)) * self.up(z))
        return self.head(h)


class MHAModel(nn.Module):
    def __init__(self, width: int, vocab: int = 30, heads: int = 2):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab)
        self.temperature = nn.Parameter(torch.ones(()))

    def forward(self, idx):
        h = self.emb(idx)
        a, _ = self.attn(h, h, h)  # need_weights=True path: no SDPA inside
        return self.out(self.ln(h + a)) * self.temperature


class LSTMLM(nn.Module):
    def __init__(self, w: int, vocab: int = 64):
        super().__init__()
        self.emb = nn.Embedding(vocab, w)
        self.rnn = nn.LSTM(w, w, batch_first=True)
        self.head = nn.Linear(w, vocab)

    def forward(self, x):
        return self.head(self.rnn(self.emb(x))[0])


def gpt_tiny(width):
    return gpt(width, n_layer=1, tied=True, vocab_size=40, block_size=8)


# ---- a tiny recipe for the tune / transfer / run commands ---------------------------------------


def write_tiny(tmp_path: Path, **extra: object) -> Path:
    """``tiny.yaml``: MLP width 16 -> 64, 60 steps, 5 GP trials (``extra`` replaces sections)."""
    data = {
        "name": "tiny",
        "model": {"name": "mlp"}, "task": {"name": "classification", "kwargs": {"n_train": 1024, "n_val": 512}},
        "train": {"batch_size": 32, "steps": 60},
        "widths": {"proxy": 16, "target": 64},
        "search": {"lr": {"type": "log_float", "low": 3e-3, "high": 1e-1}},
        "tune": {"trials": 5, "sampler": "gp", "startup_trials": 3},
        **extra,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def transfer_recipe(tmp_path: Path, **extra: object) -> dict:
    """MLP width 16 -> 32 and 64, lr and output_mult, 3 random trials of 20 steps."""
    return {
        "name": "tiny", "out": str(tmp_path / "run"),
        "model": {"name": "mlp"}, "task": {"name": "classification", "kwargs": {"n_train": 512, "n_val": 256}},
        "train": {"batch_size": 32, "steps": 20},
        "widths": {"proxy": 16, "target": [32, 64]},
        "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1},
                   "output_mult": {"type": "log_float", "low": 0.5, "high": 2.0}},
        "tune": {"trials": 3, "sampler": "random"},
        **extra,
    }


# ---- models with a depth axis (factories called as (width, depth)) --------------------------------


class ResMLP(nn.Module):
    """A hidden-size-free toy ResNet-style MLP: no config object, no attribute naming its width;
    blocks ``x + fc2(relu(fc1(x)))`` in an ``nn.Sequential`` whose length is the depth."""

    def __init__(self, width: int, depth: int, d_in: int = 8, d_out: int = 4):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.Sequential(*(_ResBlock(width) for _ in range(depth)))
        self.out = nn.Linear(width, d_out)

    def forward(self, x):
        return self.out(self.blocks(self.inp(x)))


class _ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x):
        return x + self.fc2(F.relu(self.fc1(x)))


class _FunctionalBranchBlock(nn.Module):
    """Adds a branch computed with ``F.linear`` (no submodule returns it): no hook can scale it."""

    def __init__(self, width: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(width, width) / width**0.5)

    def forward(self, x):
        return x + F.linear(torch.tanh(x), self.w)


def functional_branch_model(width: int, depth: int) -> nn.Module:
    return nn.Sequential(nn.Linear(8, width), nn.Sequential(*(_FunctionalBranchBlock(width) for _ in range(depth))),
                         nn.Linear(width, 4))


class _TupleAttention(nn.Module):
    """Hugging Face style: the attention module returns ``(hidden, None)``."""

    def __init__(self, width: int):
        super().__init__()
        self.c_proj = nn.Linear(width, width)

    def forward(self, hidden_states):
        return self.c_proj(torch.tanh(hidden_states)), None


class _LlamaStyleLayer(nn.Module):
    """``residual = h; h = attn(norm(h))[0]; h = residual + h`` (Llama/GPT-2 decoder layers), with an
    MLP whose output goes through a dropout before the addition (nanoGPT's ``resid_dropout``)."""

    def __init__(self, width: int):
        super().__init__()
        self.input_layernorm, self.self_attn = nn.LayerNorm(width), _TupleAttention(width)
        self.post_attention_layernorm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.dropout = nn.Dropout(0.0)

    def forward(self, hidden_states):
        residual = hidden_states
        hidden_states = self.self_attn(self.input_layernorm(hidden_states))[0]
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))
        return residual + hidden_states


class LlamaStyle(nn.Module):
    """Embedding, ``self.model.layers`` (a ModuleList of :class:`_LlamaStyleLayer`), norm, head."""

    def __init__(self, width: int, depth: int):
        super().__init__()
        self.embed = nn.Embedding(32, width)
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(_LlamaStyleLayer(width) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, 32, bias=False)

    def forward(self, idx):
        h = self.embed(idx)
        for layer in self.model.layers:
            h = layer(h)
        return self.head(self.norm(h))


def gpt_depth(width: int, depth: int) -> nn.Module:
    """The reference GPT with ``n_layer = depth`` (small heads so widths 16.. work)."""
    return gpt(width, n_layer=depth, n_head=2, vocab_size=32, block_size=16)
