"""A coordinate check that fails because Adam's epsilon swamps the gradients says so: a
layer-scale block (gamma = 1e-6, as ConvNeXt and CaiT initialise it) under Adam's default eps fails
μP with vanishing updates and a hint naming the parameters; with a small eps it passes, no hint."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import hptransfer as hpt
from hptransfer.zoo import get_task


class LayerScaleLM(nn.Module):
    def __init__(self, width: int, blocks: int = 2):
        super().__init__()
        self.embed = nn.Embedding(256, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(blocks))
        self.up = nn.ModuleList(nn.Linear(width, 4 * width) for _ in range(blocks))
        self.down = nn.ModuleList(nn.Linear(4 * width, width) for _ in range(blocks))
        self.gamma = nn.ParameterList(nn.Parameter(1e-6 * torch.ones(width)) for _ in range(blocks))
        self.head = nn.Linear(width, 256)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.embed(idx)
        for norm, up, down, gamma in zip(self.norms, self.up, self.down, self.gamma):
            h = h + gamma * down(F.gelu(up(norm(h))))
        return self.head(h)


class TinyEpsAdam(torch.optim.Adam):
    def __init__(self, params, lr: float = 1e-3, **kw):
        super().__init__(params, lr=lr, eps=1e-16, **kw)


def _check(optimizer):
    return hpt.coord_check(LayerScaleLM, widths=(32, 64, 128, 256), optimizer=optimizer, batch_size=8, seeds=(0, 1),
                           task=get_task("charlm", block_size=16, n_bytes=200_000))


def test_eps_swamping_the_gradients_is_named_as_the_cause():
    result = _check("adam")
    assert not result.passed
    capped = result.extra["eps_capped"]
    assert any(n.startswith("up.") for n in capped) and all(v["eps"] == 1e-8 for v in capped.values())
    assert "hint: Adam's eps=1e-08" in result.summary() and "scale_eps=True" in result.summary()


def test_with_a_small_eps_it_passes_without_a_hint():
    result = _check(TinyEpsAdam)
    assert result.passed, result.failing[:3]
    assert result.extra["eps_capped"] == {} and "hint" not in result.summary()
