"""Attention scaling: SDPA logits as 1/d, nn.MultiheadAttention's query, the trace that finds
them (hptransfer.parametrization._attention)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from _helpers import MHAModel
from torch import nn

import hptransfer as hpt
from hptransfer.errors import ParametrizationError


class ScaledAttn(nn.Module):
    def __init__(self, width: int, heads: int = 2, scale_rule=None):
        super().__init__()
        self.heads, self.scale_rule = heads, scale_rule
        self.inp = nn.Linear(6, width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, 7)

    def forward(self, x):
        x = self.inp(x)
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        scale = None if self.scale_rule is None else self.scale_rule(C // self.heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


def test_sdpa_logits_scale_as_one_over_d():
    x = torch.randn(2, 5, 6)
    d0 = 16 // 2
    torch.manual_seed(0)
    auto = hpt.parametrize(ScaledAttn, width=64, base_width=16, example_input=x)
    torch.manual_seed(0)
    manual = hpt.parametrize(functools.partial(ScaledAttn, scale_rule=lambda d: math.sqrt(d0) / d),
                             width=64, base_width=16, attention="off")
    torch.manual_seed(0)
    plain = hpt.parametrize(ScaledAttn, width=64, base_width=16, attention="off")
    assert torch.allclose(auto(x), manual(x), atol=1e-6)
    assert not torch.allclose(auto(x), plain(x), atol=1e-4)
    assert hpt.scaling_table(auto).attention == {"sdpa:": {32: 0.5}}
    # the lazy path (no example_input) traces on the first call and gives the same model
    torch.manual_seed(0)
    lazy = hpt.parametrize(ScaledAttn, width=64, base_width=16)
    assert torch.allclose(lazy(x), manual(x), atol=1e-6)
    # attn_mult multiplies on top, also under SP
    torch.manual_seed(0)
    sp2 = hpt.parametrize(ScaledAttn, width=64, base_width=16, parametrization="sp", attn_mult=2.0, example_input=x)
    torch.manual_seed(0)
    sp2_manual = hpt.parametrize(functools.partial(ScaledAttn, scale_rule=lambda d: 2.0 / math.sqrt(d)),
                                 width=64, base_width=16, parametrization="sp", attention="off")
    assert torch.allclose(sp2(x), sp2_manual(x), atol=1e-6)


def test_multihead_attention_query_scaled():
    idx = torch.randint(0, 30, (2, 6))
    torch.manual_seed(0)
    mu = hpt.parametrize(MHAModel, width=32, base_width=8)
    torch.manual_seed(0)
    ref = hpt.parametrize(MHAModel, width=32, base_width=8, attention="off")
    with torch.no_grad():  # factor sqrt(4/16) = 0.5 on the query rows == logits x 0.5
        ref.attn.in_proj_weight[:32] *= 0.5
        ref.attn.in_proj_bias[:32] *= 0.5
    assert torch.allclose(mu(idx), ref(idx), atol=1e-6)
    mu.train()
    out = mu(idx)
    out.sum().backward()  # gradients flow into the real parameter
    assert mu.attn.in_proj_weight.grad is not None


def test_error_attention_trace_failure_is_clear():
    with pytest.raises(ParametrizationError, match="example_input"):
        hpt.parametrize(ScaledAttn, width=64, base_width=16, example_input=torch.randn(2, 5, 7))


def test_factor_for_a_module_with_its_own_scale_keeps_the_total_at_one_over_d():
    from hptransfer.parametrization import get_parametrization

    mup, sp = get_parametrization("mup"), get_parametrization("sp")
    # a 1/sqrt(d) model (GPT-2, Llama): exactly the plain factor, sqrt(d0/d)
    assert mup.scaled_attention_factor(64, 16, 2.0, 64 ** -0.5, 16 ** -0.5) == mup.attention_factor(64, 16, 2.0) == 1.0
    # T5: scale 1.0 at every width (1/sqrt(d) folded into the query init): d0/d, so the total is still ~ 1/d
    assert mup.scaled_attention_factor(64, 16, 1.0, 1.0, 1.0) == pytest.approx(16 / 64)
    assert sp.scaled_attention_factor(64, 16, 3.0, 1.0, 1.0) == 3.0  # SP keeps the model's own scale
