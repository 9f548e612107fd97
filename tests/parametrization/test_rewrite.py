"""The rewrite: μP equals SP at the base width, readout and init rescaling, zero-init options,
re-attaching the table, torch.compile, and argument errors (hptransfer.parametrization._rewrite)."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from _helpers import GLUMLP, MHAModel, gpt_tiny, hpt_warns

import hptransfer as hpt
from hptransfer.errors import ParametrizationError, ShapeInferenceError
from hptransfer.models import gpt, mlp
from hptransfer.parametrization import ScalingTable

# ------------------------------------------------------------------ exactness at base width


@pytest.mark.parametrize("factory", [mlp, functools.partial(gpt, n_layer=1, tied=True), MHAModel, GLUMLP])
def test_mup_equals_sp_at_base_width(factory):
    x = {mlp: torch.randn(4, 32), MHAModel: torch.randint(0, 30, (2, 6)), GLUMLP: torch.randn(4, 12)}.get(
        factory, torch.randint(0, 256, (2, 8)))
    models = []
    for p in ("sp", "mup"):
        torch.manual_seed(0)
        m = hpt.parametrize(factory, width=32, base_width=32, parametrization=p)
        opt = hpt.optimizer(m, torch.optim.AdamW, lr=1e-2, weight_decay=0.1)
        for _ in range(3):
            opt.zero_grad()
            m(x).float().pow(2).mean().backward()
            opt.step()
        models.append(m)
    sp, mu = models
    assert torch.equal(sp(x), mu(x))
    for (n1, p1), (n2, p2) in zip(sp.named_parameters(), mu.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1


def test_readout_init_and_multiplier():
    torch.manual_seed(0)
    sp = hpt.parametrize(mlp, width=256, base_width=16, parametrization="sp")
    torch.manual_seed(0)
    mu = hpt.parametrize(mlp, width=256, base_width=16, parametrization="mup", output_mult=2.0)
    t = hpt.scaling_table(mu)
    # mup's MuReadout form: weight and bias x sqrt(m), input x output_mult / m
    assert torch.allclose(mu.readout.weight, sp.readout.weight * 4.0)
    assert torch.allclose(mu.readout.bias, sp.readout.bias * 4.0)
    assert t.module_scalings[0].multiplier == pytest.approx(2.0 / 16)
    # linear biases: PyTorch's U(+-1/sqrt(fan_in)) shrink is undone (x sqrt(fan_in_mult))
    assert torch.allclose(mu.hidden[0].bias, sp.hidden[0].bias * 4.0)
    assert torch.equal(mu.input.bias, sp.input.bias) and torch.equal(mu.hidden[0].weight, sp.hidden[0].weight)
    x = torch.randn(3, 32)
    h = mu.act(mu.hidden[0](mu.act(mu.input(x))))
    assert torch.allclose(mu(x), F.linear(h * 2.0 / 16, sp.readout.weight * 4.0, sp.readout.bias * 4.0), atol=1e-6)


def test_zero_init_options():
    model = hpt.parametrize(functools.partial(gpt, n_layer=1), width=32, base_width=16,
                            zero_readout=True, zero_query=True)
    assert model.lm_head.weight.abs().sum() == 0
    assert model.blocks[0].attn.q_proj.weight.abs().sum() == 0
    assert model.blocks[0].attn.q_proj.bias.abs().sum() == 0
    assert model.blocks[0].attn.k_proj.weight.abs().sum() > 0
    mha = hpt.parametrize(MHAModel, width=32, base_width=8, zero_query=True)
    assert mha.attn.in_proj_weight[:32].abs().sum() == 0 and mha.attn.in_proj_weight[32:].abs().sum() > 0
    with pytest.raises(ParametrizationError, match="tied"):
        hpt.parametrize(functools.partial(gpt, n_layer=1, tied=True), width=32, base_width=16, zero_readout=True)


def test_base_std_redraw():
    torch.manual_seed(0)
    m = hpt.parametrize(mlp, width=1024, base_width=64, base_std=0.02)
    assert m.input.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert m.hidden[0].weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    # readout: constant std under the multiplier form (x1/16 happens in the forward)
    assert m.readout.weight.std().item() == pytest.approx(0.02, rel=0.1)


# --------------------------------------------------------------------- metadata survival


def test_attach_table_is_idempotent_and_restores_hooks():
    x = torch.randint(0, 40, (2, 8))
    m = hpt.parametrize(gpt_tiny, width=64, base_width=16, example_input=x)
    plain = gpt_tiny(64)
    plain.load_state_dict(m.state_dict())
    table = ScalingTable.from_dict(hpt.scaling_table(m).to_dict())
    hpt.attach_table(plain, table)
    hpt.attach_table(plain, table)  # twice: hooks replaced, not stacked
    assert torch.equal(plain(x), m(x))


def test_attach_table_on_a_deepcopy_leaves_the_original_alone():
    x = torch.randint(0, 40, (2, 8))
    m = hpt.parametrize(gpt_tiny, width=64, base_width=16, example_input=x)
    expected = m(x)
    c = copy.deepcopy(m)
    hpt.attach_table(c, hpt.scaling_table(c))  # re-attach on the copy: replaces the copy's hooks
    assert torch.equal(c(x), expected) and torch.equal(m(x), expected)
    n_hooks = sum(len(mod._forward_pre_hooks) + len(mod._forward_hooks) for mod in c.modules())
    assert n_hooks == sum(len(mod._forward_pre_hooks) + len(mod._forward_hooks) for mod in m.modules())


def test_parametrize_is_idempotent_on_an_already_parametrized_model():
    cache = {}

    def cached_factory(width):  # returns the same object for the target width
        if width not in cache:
            cache[width] = mlp(width)
        return cache[width]

    m = hpt.parametrize(cached_factory, width=64, base_width=16)
    w = m.readout.weight.clone()
    again = hpt.parametrize(cached_factory, width=64, base_width=16)
    assert again is m and torch.equal(again.readout.weight, w)  # not rescaled twice
    with pytest.raises(ParametrizationError, match="already parametrized"):
        hpt.parametrize(cached_factory, width=64, base_width=16, output_mult=3.0)


def test_torch_compile_keeps_table_and_scaling():
    x = torch.randint(0, 40, (2, 8))
    m = hpt.parametrize(gpt_tiny, width=64, base_width=16)  # lazy attention trace on first call
    compiled = torch.compile(m, backend="aot_eager")
    torch.manual_seed(0)
    ref = hpt.parametrize(gpt_tiny, width=64, base_width=16, example_input=x)
    ref.load_state_dict(m.state_dict())
    assert torch.allclose(compiled(x), ref(x), atol=1e-5)
    assert hpt.scaling_table(compiled) is hpt.scaling_table(m)
    names = [n for g in hpt.param_groups(compiled, lr=1e-3) for n in g["param_names"]]
    assert all(n.startswith("_orig_mod.") for n in names)
    opt = hpt.optimizer(compiled, torch.optim.AdamW, lr=1e-3)
    compiled(x).float().pow(2).mean().backward()
    opt.step()


def test_compile_sees_one_graph_without_breaks():
    x = torch.randint(0, 40, (2, 8))
    model = hpt.parametrize(gpt_tiny, width=64, base_width=16, example_input=x)
    explained = torch._dynamo.explain(model)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


# ---------------------------------------------------------------------------- errors


def test_error_bad_arguments():
    with pytest.raises(ParametrizationError, match="unknown parametrization 'mupp'.*mup, sp"):
        hpt.parametrize(mlp, width=64, base_width=16, parametrization="mupp")
    with pytest.raises(ParametrizationError, match="width"):
        hpt.parametrize(mlp, width=-1, base_width=16)
    with pytest.raises(ShapeInferenceError, match="roles"):
        hpt.parametrize(mlp, width=64, base_width=16, roles={"input.*": "hiddn"})
    with pytest.raises(ParametrizationError, match="zero_query"):
        hpt.parametrize(mlp, width=64, base_width=16, zero_query=True)


def test_a_model_without_readout_is_warned_with_candidates():
    # Every layer's output grows with width: no parameter can take the output (readout) role.
    def factory(w):
        return torch.nn.Sequential(torch.nn.Linear(8, w), torch.nn.ReLU(), torch.nn.Linear(w, w))

    with hpt_warns(r"no parameter has the output \(readout\) role.*Candidates.*2\.weight"):
        hpt.parametrize(factory, width=32, base_width=16)
