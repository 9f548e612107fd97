"""The attention trace survives real forward code, names module and operation when it fails,
and reports attention computed by hand."""

from __future__ import annotations

import pytest
import torch
from _helpers import hpt_warns
from _models import ForwardMaskLM, nanogpt_eager, torch_transformer
from torch import nn

import hptransfer as hpt
from hptransfer.errors import ParametrizationError
from hptransfer.parametrization._trace import TraceFailure, module_stack, trace_attention

X = torch.randint(0, 256, (2, 16))


def _pair(factory, width, base, **kw):
    torch.manual_seed(0)
    plain = factory(width)
    torch.manual_seed(0)
    return plain, hpt.parametrize(factory, width=width, base_width=base, **kw)


def test_the_meta_trace_fails_on_item_and_names_module_and_op():
    with torch.device("meta"):
        model = ForwardMaskLM(64)
    with pytest.raises(TraceFailure) as info:
        trace_attention(model, X, meta=True)
    assert "item" in info.value.op and info.value.module == ""


@pytest.mark.parametrize("example", [True, False])
def test_forward_with_item_equal_and_deviceless_mask_parametrizes(example):
    _, mu = _pair(ForwardMaskLM, 128, 32, example_input=X if example else None)
    mu(X)  # the lazy trace runs here without an example input
    assert hpt.scaling_table(mu).attention == {"sdpa:": {64: 0.5}}  # sqrt(16)/64 relative to 1/sqrt(64)
    _, same = _pair(ForwardMaskLM, 32, 32, example_input=X if example else None)
    torch.manual_seed(0)
    assert torch.equal(same(X), ForwardMaskLM(32)(X))


def test_torch_transformer_encoder_decoder_parametrizes_with_default_options():
    src, tgt = torch.randn(2, 8, 128), torch.randn(2, 6, 128)
    _, mu = _pair(torch_transformer, 128, 32, example_input=(src, tgt))
    table = hpt.scaling_table(mu)
    assert set(table.attention) == {"mha:encoder.layers.0.self_attn", "mha:decoder.layers.0.self_attn",
                                    "mha:decoder.layers.0.multihead_attn"}
    assert all(f == {64: 0.5} for f in table.attention.values())
    lrs = {n: g["lr"] for g in hpt.param_groups(mu, lr=1.0) for n in g["param_names"]}
    assert lrs["encoder.layers.0.linear1.weight"] == pytest.approx(0.25)
    base_plain, base_mu = _pair(torch_transformer, 32, 32)
    s, t = torch.randn(2, 8, 32), torch.randn(2, 6, 32)
    assert torch.equal(base_mu(s, t), base_plain(s, t))


class _Broken(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inner = nn.Linear(width, width)
        self.out = nn.Linear(width, 3)

    def forward(self, x):
        return self.out(self.inner(x) @ torch.ones(5, 7))  # wrong shape at every width


def test_an_error_that_remains_names_module_and_operation():
    with pytest.raises(ParametrizationError) as info:
        hpt.parametrize(_Broken, width=64, base_width=16, example_input=torch.randn(2, 64))
    msg = str(info.value)

    assert "module '<root>'" in msg and "matmul" in msg and "Fix:" in msg


def test_hand_written_attention_is_reported_with_module_and_fix():
    with hpt_warns(r"transformer\.h\.0\.attn.*scaled_dot_product_attention"):
        mu = hpt.parametrize(nanogpt_eager, width=128, base_width=32, example_input=X)
    assert any("by hand" in n for n in hpt.scaling_table(mu).notes)


def test_module_stack_names_the_innermost_module():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU()))
    stack, handles = module_stack(model)
    seen = []
    model[1][0].register_forward_pre_hook(lambda m, a: seen.append(stack[-1]))
    model(torch.randn(1, 4))
    assert seen == ["1.0"] and stack == [""]
    for h in handles:
        h.remove()


@pytest.mark.parametrize("parametrization, options, passes",
                         [pytest.param("mup", {}, True, marks=pytest.mark.slow),  # MHA: test_constants' model
                          pytest.param("sp", {}, False, marks=pytest.mark.slow),
                          pytest.param("mup", {"attention": "off"}, False, marks=pytest.mark.slow)])  # 6 s each
def test_torch_transformer_coord_check_passes_under_mup_and_fails_under_sp(parametrization, options, passes):
    # torch's own encoder-decoder with default options: its three nn.MultiheadAttention modules get
    # 1/d with no trace, its Linear layers the μP init and LR. With attention left at 1/sqrt(d) the
    # check must fail too: it measures each MultiheadAttention's scale x d (+0.5 per doubling).
    def batch(step):
        g = torch.Generator().manual_seed(step)
        src, tgt = torch.randn(8, 8, 16, generator=g), torch.randn(8, 6, 16, generator=g)
        return (src, tgt), tgt.flip(1)

    class Seq2Seq(nn.Module):
        def __init__(self, width):  # 16-dim sequences in and out, projected to the model width
            super().__init__()
            self.inp = nn.Linear(16, width)
            self.core = torch_transformer(width)
            self.out = nn.Linear(width, 16)

        def forward(self, src, tgt):
            return self.out(self.core(self.inp(src), self.inp(tgt)))

    result = hpt.coord_check(Seq2Seq, widths=(32, 64, 128, 256), parametrization=parametrization,
                             batch_fn=batch, loss_fn=torch.nn.functional.mse_loss, seeds=(0, 1), **options)
    assert result.passed is passes, result.failing[:3]
    if options:
        assert all("[attn scale x d]" in f[0] for f in result.failing), result.failing
