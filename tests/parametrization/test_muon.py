"""The spectral family: Muon for 2-D hidden matrices, AdamW for the rest (hptransfer.parametrization._muon,
_rules.is_spectral, _groups.param_groups with optimizer='muon')."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hptransfer as hpt
from hptransfer.errors import OptimizerConfigError
from hptransfer.parametrization import MuonAdamW, optimizer_family
from hptransfer.parametrization._muon import OwnMuon, muon_class


class _Uneven(nn.Module):
    """``up`` grows its fan-out as width^2 and its fan-in as width, so the spectral multiplier is not 1."""

    def __init__(self, width: int):
        super().__init__()
        self.inp = nn.Linear(4, width)
        self.up = nn.Linear(width, width * width // 16)
        self.conv = nn.Conv1d(width * width // 16, width, 1)
        self.out = nn.Linear(width, 3)

    def forward(self, x):
        h = self.up(torch.relu(self.inp(x)))
        return self.out(self.conv(h.unsqueeze(-1)).squeeze(-1))


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="this torch has no torch.optim.Muon to compare with")
def test_own_muon_equals_torch_muon():
    torch.manual_seed(0)
    tall, wide = nn.Parameter(torch.randn(16, 8)), nn.Parameter(torch.randn(8, 16))
    copies = [nn.Parameter(p.detach().clone()) for p in (tall, wide)]
    ref = torch.optim.Muon([tall, wide], lr=0.1, weight_decay=0.01)
    own = OwnMuon(copies, lr=0.1, weight_decay=0.01)
    for _ in range(3):
        for a, b in zip((tall, wide), copies):
            g = torch.randn_like(a)
            a.grad, b.grad = g.clone(), g.clone()
        ref.step()
        own.step()
    assert torch.equal(tall, copies[0]) and torch.equal(wide, copies[1])
    assert muon_class() is torch.optim.Muon


def test_spectral_groups_route_hidden_matrices_to_muon_with_the_spectral_rule():
    m = hpt.parametrize(_Uneven, width=32, base_width=16)
    groups = hpt.param_groups(m, lr=1e-3, optimizer="muon", muon_lr=2e-2, scale_eps=True)
    by = {n: g for g in groups for n in g["param_names"]}
    # up: fan_out x (32*32/16)/16 = 4, fan_in x 2 -> sqrt(4 / 2) (Adam would give 1/2)
    assert by["up.weight"]["family"] == "spectral" and by["up.weight"]["lr"] == pytest.approx(2e-2 * math.sqrt(2))
    assert "eps" not in by["up.weight"]  # Muon's own eps is not Adam's
    # a hidden conv (3-D) and every vector-like or readout tensor go to AdamW under the Adam rule
    assert by["conv.weight"]["family"] == "adam" and by["conv.weight"]["lr"] == pytest.approx(1e-3 / 4)
    assert by["inp.weight"]["family"] == "adam" and by["inp.weight"]["lr"] == pytest.approx(1e-3)
    assert by["up.bias"]["family"] == "adam" and by["out.weight"]["family"] == "adam"
    assert optimizer_family("muon") == optimizer_family(MuonAdamW) == "spectral"


def test_muon_adamw_trains_and_schedules_every_group():
    torch.manual_seed(0)
    m = hpt.parametrize(_Uneven, width=32, base_width=16)
    opt = hpt.optimizer(m, MuonAdamW, lr=3e-3, muon_lr=2e-2)
    assert len(opt.param_groups) == sum(len(o.param_groups) for o in opt.optimizers) >= 2
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    losses = []
    for _ in range(20):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(not torch.equal(start[n], p) for n, p in m.named_parameters())  # both halves stepped
    before = m.up.weight.detach().clone()
    for g in opt.param_groups:  # a schedule at 0 stops every group, Muon's included
        g["lr"] = 0.0
    m(x).sum().backward()
    opt.step()
    assert torch.equal(before, m.up.weight)


def test_muon_groups_must_be_matrices():
    w = nn.Parameter(torch.randn(3, 3, 3))
    with pytest.raises(OptimizerConfigError, match="2-D"):
        MuonAdamW([{"params": [w], "param_names": ["w"], "family": "spectral", "lr": 0.1}])
