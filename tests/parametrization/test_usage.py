"""Readouts held as raw ``nn.Parameter`` tensors: found by how the forward uses them
(hptransfer.parametrization._usage), or warned about with the parameter's name and the fix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _helpers import hpt_warns, no_warnings
from torch import nn

import hptransfer as hpt

VOCAB = 11
X = torch.randint(0, VOCAB, (2, 5))


class RawHead(nn.Module):
    """An LM whose readout is a bare parameter used as ``h @ W.T`` (no nn.Linear to recognise)."""

    def __init__(self, width: int, tied: bool = False):
        super().__init__()
        self.tied = tied
        self.embed = nn.Embedding(VOCAB, width)
        self.pos = nn.Parameter(torch.zeros(5, width))  # a raw table too, used by slicing: stays input
        self.mlp = nn.Linear(width, width)
        self.lm_head = nn.Parameter(torch.randn(VOCAB, width) / width ** 0.5)

    def forward(self, idx):
        emb = F.embedding(idx, self.lm_head) if self.tied else self.embed(idx)
        h = torch.relu(self.mlp(emb + self.pos[: idx.shape[1]]))
        return h @ self.lm_head.float().T


def _quiet(**kw):
    with no_warnings(python=False):
        return hpt.parametrize(RawHead, **kw)


def test_raw_readout_gets_the_output_role_from_the_forward():
    torch.manual_seed(0)
    plain = RawHead(16)
    torch.manual_seed(0)
    base = _quiet(width=16, base_width=16, example_input=X)
    assert torch.equal(plain(X), base(X))  # exact at the base width
    torch.manual_seed(0)
    mu = _quiet(width=64, base_width=16, example_input=X)
    table = hpt.scaling_table(mu)
    info = table.params["lm_head"]
    assert (info.role, info.fan_in_mult, info.fan_out_mult) == ("output", 4.0, 1.0)
    assert table.params["pos"].role == "input" and table.params["embed.weight"].role == "input"
    lrs = {n: g["lr"] for g in hpt.param_groups(mu, lr=1.0) for n in g["param_names"]}
    assert lrs["lm_head"] == pytest.approx(1 / 4) and lrs["mlp.weight"] == pytest.approx(1 / 4)
    # the same model as naming it by hand
    torch.manual_seed(0)
    named = hpt.parametrize(RawHead, width=64, base_width=16, readout="lm_head")
    assert hpt.scaling_table(named).params["lm_head"] == info
    assert torch.equal(mu.lm_head, named.lm_head)


def test_raw_readout_without_example_input_is_warned_with_its_name_and_the_fix():
    with hpt_warns(r"\['pos', 'lm_head'\].*readout='lm_head'.*example_input="):
        mu = hpt.parametrize(RawHead, width=64, base_width=16)
    assert hpt.scaling_table(mu).params["lm_head"].role == "input"


def test_a_tied_raw_readout_is_warned_not_guessed():
    with hpt_warns(r"\['lm_head'\] are both indexed and multiplied.*nn\.Linear"):
        mu = hpt.parametrize(lambda w: RawHead(w, tied=True), width=64, base_width=16, example_input=X)
    assert hpt.scaling_table(mu).params["lm_head"].role == "input"
