"""Parametrization layer: roles on a model zoo, exactness at the base width, attention scaling,
metadata that survives copies/checkpoints/compile/DDP, and every user-error case."""

from __future__ import annotations

import copy
import functools
import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hptransfer as hpt
from hptransfer.errors import FactoryError, ParametrizationError, ShapeInferenceError
from hptransfer.models import cnn, gpt, mlp
from hptransfer.parametrization import ScalingTable, strip_prefix

# --------------------------------------------------------------------------- zoo models


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


def roles(model: nn.Module) -> dict[str, str]:
    return {n: i.role for n, i in hpt.scaling_table(model).params.items()}


def test_roles_mlp():
    r = roles(hpt.parametrize(mlp, width=64, base_width=16))
    assert r == {
        "input.weight": "input", "input.bias": "input",
        "hidden.0.weight": "hidden", "hidden.0.bias": "input",
        "readout.weight": "output", "readout.bias": "scalar",
    }


def test_roles_cnn_conv_axes():
    model = hpt.parametrize(cnn, width=32, base_width=8)
    t = hpt.scaling_table(model)
    assert t.params["conv1.weight"].role == "input"
    assert t.params["conv2.weight"].role == "hidden"
    assert t.params["conv2.weight"].fan_in_mult == 4.0
    assert t.params["norm.weight"].role == "input"
    assert t.params["readout.weight"].role == "output"


def test_roles_gpt_and_head_count_scaling():
    for kwargs in ({}, {"head_dim": 8}):
        model = hpt.parametrize(functools.partial(gpt, n_layer=1, **kwargs), width=64, base_width=16)
        r = roles(model)
        assert r["wte.weight"] == "input" and r["wpe.weight"] == "input"
        assert r["blocks.0.attn.q_proj.weight"] == "hidden"
        assert r["blocks.0.mlp.fc.weight"] == "hidden" and r["blocks.0.mlp.proj.weight"] == "hidden"
        assert r["blocks.0.ln1.weight"] == "input"
        assert r["lm_head.weight"] == "output"


def test_roles_tied_embedding_readout():
    model = hpt.parametrize(functools.partial(gpt, n_layer=1, tied=True), width=64, base_width=16)
    t = hpt.scaling_table(model)
    info = t.params["wte.weight"]
    assert "lm_head.weight" not in t.params  # one tensor, one entry
    assert info.role == "input" and info.tied_to == ("lm_head.weight",)
    assert info.readout_module == "lm_head"
    assert [(m.module, m.multiplier) for m in t.module_scalings] == [("lm_head", 0.25)]
    assert t.info("lm_head.weight") is info


def test_roles_glu_rmsnorm_no_bias():
    t = hpt.scaling_table(hpt.parametrize(GLUMLP, width=48, base_width=12))
    assert {n: i.role for n, i in t.params.items()} == {
        "embed.weight": "input", "norm.weight": "input", "up.weight": "hidden",
        "gate.weight": "hidden", "down.weight": "hidden", "head.weight": "output",
    }
    # int(8w/3) grows a little faster than w: the multipliers come from real shapes.
    assert t.params["down.weight"].fan_in_mult == pytest.approx(128 / 32)


def test_roles_multihead_attention_and_scalar():
    t = hpt.scaling_table(hpt.parametrize(MHAModel, width=32, base_width=8))
    assert t.params["attn.in_proj_weight"].role == "hidden"
    assert t.params["attn.in_proj_bias"].role == "input"
    assert t.params["attn.out_proj.weight"].role == "hidden"
    assert t.params["temperature"].role == "scalar"
    assert t.params["out.weight"].role == "output"
    assert t.attention == {"mha:attn": {16: 0.5}}


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


def test_adam_and_sgd_learning_rates():
    model = hpt.parametrize(mlp, width=128, base_width=32)
    adam = {n: g["lr"] for g in hpt.param_groups(model, lr=1.0) for n in g["param_names"]}
    assert adam == {"input.weight": 1.0, "input.bias": 1.0, "hidden.0.weight": 0.25, "hidden.0.bias": 1.0,
                    "readout.weight": 1.0, "readout.bias": 1.0}
    sgd = {n: g["lr"] for g in hpt.param_groups(model, lr=1.0, optimizer="sgd") for n in g["param_names"]}
    assert sgd == {"input.weight": 4.0, "input.bias": 4.0, "hidden.0.weight": 1.0, "hidden.0.bias": 4.0,
                   "readout.weight": 4.0, "readout.bias": 1.0}


def test_weight_decay_modes_and_eps():
    model = hpt.parametrize(mlp, width=128, base_width=32)
    groups = hpt.param_groups(model, lr=0.01, weight_decay=0.1)
    by = {n: g for g in groups for n in g["param_names"]}
    # coupled: lr * wd is what it is at the base width, for every group
    assert all(g["lr"] * g["weight_decay"] == pytest.approx(0.01 * 0.1) for g in groups)
    indep = {n: g for g in hpt.param_groups(model, lr=0.01, weight_decay=1e-4, weight_decay_mode="independent")
             for n in g["param_names"]}
    assert all(g["lr"] * g["weight_decay"] == pytest.approx(1e-4) for g in indep.values())
    mats = {n: g["weight_decay"] for g in hpt.param_groups(model, lr=0.01, weight_decay=0.1, decay="matrices")
            for n in g["param_names"]}
    assert mats["input.bias"] == 0.0 and mats["input.weight"] == pytest.approx(0.1)
    eps = {n: g["eps"] for g in hpt.param_groups(model, lr=0.01, scale_eps=True, eps=1e-8) for n in g["param_names"]}
    assert eps["hidden.0.weight"] == pytest.approx(0.25e-8) and eps["input.weight"] == pytest.approx(1e-8)
    assert by["hidden.0.weight"]["lr_mult"] == 0.25
    opt = hpt.optimizer(model, torch.optim.SGD, lr=0.1, momentum=0.9)
    assert isinstance(opt, torch.optim.SGD) and len(opt.param_groups) >= 2


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


# ---------------------------------------------------------------------- attention scaling


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


# --------------------------------------------------------------------- metadata survival


def _gpt_tiny(width):
    return gpt(width, n_layer=1, tied=True, vocab_size=40, block_size=8)


def test_table_survives_deepcopy_and_is_serialisable():
    x = torch.randint(0, 40, (2, 8))
    m = hpt.parametrize(_gpt_tiny, width=64, base_width=16, example_input=x)
    c = copy.deepcopy(m)
    assert torch.equal(c(x), m(x))
    assert hpt.scaling_table(c).to_dict() == hpt.scaling_table(m).to_dict()
    t = ScalingTable.from_dict(hpt.scaling_table(m).to_dict())
    assert t.to_dict() == hpt.scaling_table(m).to_dict()
    assert [g["lr"] for g in hpt.param_groups(c, lr=1e-2)] == [g["lr"] for g in hpt.param_groups(m, lr=1e-2)]


def test_state_dict_round_trip_into_rebuilt_model():
    x = torch.randint(0, 40, (2, 8))
    torch.manual_seed(1)
    m = hpt.parametrize(_gpt_tiny, width=64, base_width=16, example_input=x)
    torch.manual_seed(2)
    fresh = hpt.parametrize(_gpt_tiny, width=64, base_width=16, example_input=x)
    assert not torch.equal(fresh(x), m(x))
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh(x), m(x))
    assert set(m.state_dict()) == set(_gpt_tiny(64).state_dict())  # no extra keys in checkpoints


def test_attach_table_is_idempotent_and_restores_hooks():
    x = torch.randint(0, 40, (2, 8))
    m = hpt.parametrize(_gpt_tiny, width=64, base_width=16, example_input=x)
    plain = _gpt_tiny(64)
    plain.load_state_dict(m.state_dict())
    table = ScalingTable.from_dict(hpt.scaling_table(m).to_dict())
    hpt.attach_table(plain, table)
    hpt.attach_table(plain, table)  # twice: hooks replaced, not stacked
    assert torch.equal(plain(x), m(x))


def test_attach_table_on_a_deepcopy_leaves_the_original_alone():
    x = torch.randint(0, 40, (2, 8))
    m = hpt.parametrize(_gpt_tiny, width=64, base_width=16, example_input=x)
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
    m = hpt.parametrize(_gpt_tiny, width=64, base_width=16)  # lazy attention trace on first call
    compiled = torch.compile(m, backend="aot_eager")
    torch.manual_seed(0)
    ref = hpt.parametrize(_gpt_tiny, width=64, base_width=16, example_input=x)
    ref.load_state_dict(m.state_dict())
    assert torch.allclose(compiled(x), ref(x), atol=1e-5)
    assert hpt.scaling_table(compiled) is hpt.scaling_table(m)
    names = [n for g in hpt.param_groups(compiled, lr=1e-3) for n in g["param_names"]]
    assert all(n.startswith("_orig_mod.") for n in names)
    opt = hpt.optimizer(compiled, torch.optim.AdamW, lr=1e-3)
    compiled(x).float().pow(2).mean().backward()
    opt.step()


def test_ddp_prefix():
    assert strip_prefix("module.embed.weight") == "embed.weight"  # a prefix, not a character set
    assert strip_prefix("module._orig_mod.module.x") == "x"
    assert strip_prefix("modules.weight") == "modules.weight"
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        m = hpt.parametrize(mlp, width=64, base_width=16)
        ddp = nn.parallel.DistributedDataParallel(m)
        groups = hpt.param_groups(ddp, lr=1.0)
        lrs = {n: g["lr"] for g in groups for n in g["param_names"]}
        assert lrs["module.hidden.0.weight"] == 0.25 and lrs["module.readout.weight"] == 1.0
        x = torch.randn(3, 32)
        assert torch.allclose(ddp(x), m(x))
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------- errors


def test_error_nothing_scales():
    with pytest.raises(ShapeInferenceError, match="nothing scales with width"):
        hpt.parametrize(lambda w: nn.Linear(8, 8), width=64, base_width=16)


def test_error_more_than_two_width_dims():
    class Cube(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.t = nn.Parameter(torch.zeros(w, w, w))

    with pytest.raises(ShapeInferenceError, match=r"'t'.*3 dimensions that grow"):
        hpt.parametrize(Cube, width=8, base_width=4)


def test_error_ambiguous_readout_and_fix():
    class Bottleneck(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.a = nn.Linear(4, w)
            self.squeeze = nn.Linear(w, 3)
            self.b = nn.Linear(3, w)
            self.head = nn.Linear(w, 2)

        def forward(self, x):
            return self.head(self.b(self.squeeze(self.a(x))))

    with pytest.raises(ShapeInferenceError, match=r"ambiguous readout.*squeeze.weight.*head.weight.*readout="):
        hpt.parametrize(Bottleneck, width=32, base_width=8)
    m = hpt.parametrize(Bottleneck, width=32, base_width=8, readout="head.weight",
                        roles={"squeeze.weight": "output"})
    t = hpt.scaling_table(m)
    assert t.params["head.weight"].readout_module == "head"
    assert t.params["squeeze.weight"].role == "output" and t.params["squeeze.weight"].readout_module is None
    # in-place readout (Table 3 form): Adam LR / m
    lrs = {n: g["lr"] for g in hpt.param_groups(m, lr=1.0) for n in g["param_names"]}
    assert lrs["squeeze.weight"] == 0.25 and lrs["head.weight"] == 1.0


def test_error_names_differ_between_widths():
    def factory(w):
        layers = [nn.Linear(4, w)] + [nn.Linear(w, w) for _ in range(w // 16)]
        return nn.Sequential(*layers, nn.Linear(w, 2))

    with pytest.raises(ShapeInferenceError, match="names differ between width"):
        hpt.parametrize(factory, width=64, base_width=16)


def test_error_factory_fails_at_a_width():
    def factory(w):
        if w > 40:
            raise ValueError("too wide for this toy")
        return mlp(w)

    with pytest.raises(FactoryError, match=r"width=64 \(the target width\).*too wide"):
        hpt.parametrize(factory, width=64, base_width=16)
    with pytest.raises(FactoryError, match=r"width=32 \(the probe width\)"):
        hpt.parametrize(lambda w: mlp(w) if w != 32 else None, width=24, base_width=16)
    with pytest.raises(FactoryError, match="not an nn.Module"):
        hpt.parametrize(lambda w: "model", width=24, base_width=16)


def test_error_bad_arguments():
    with pytest.raises(ParametrizationError, match="unknown parametrization 'mupp'.*mup, sp"):
        hpt.parametrize(mlp, width=64, base_width=16, parametrization="mupp")
    with pytest.raises(ParametrizationError, match="width"):
        hpt.parametrize(mlp, width=-1, base_width=16)
    with pytest.raises(ShapeInferenceError, match="roles"):
        hpt.parametrize(mlp, width=64, base_width=16, roles={"input.*": "hiddn"})
    with pytest.raises(ParametrizationError, match="zero_query"):
        hpt.parametrize(mlp, width=64, base_width=16, zero_query=True)
    with pytest.raises(ParametrizationError, match="no hptransfer scaling table"):
        hpt.param_groups(mlp(8), lr=1e-3)
    m = hpt.parametrize(mlp, width=64, base_width=16)
    with pytest.raises(hpt.OptimizerConfigError, match="family"):
        hpt.optimizer(m, torch.optim.LBFGS, lr=1.0)
    with pytest.raises(hpt.OptimizerConfigError, match="weight_decay_mode"):
        hpt.param_groups(m, lr=1e-3, weight_decay_mode="decoupled-ish")
    m.extra = nn.Linear(3, 3)  # added after parametrize: no role
    with pytest.raises(ParametrizationError, match=r"'extra.weight' is not in the scaling table"):
        hpt.param_groups(m, lr=1e-3)


def test_error_attention_trace_failure_is_clear():
    with pytest.raises(ParametrizationError, match="example_input"):
        hpt.parametrize(ScaledAttn, width=64, base_width=16, example_input=torch.randn(2, 5, 7))


def test_compile_sees_one_graph_without_breaks():
    x = torch.randint(0, 40, (2, 8))
    model = hpt.parametrize(_gpt_tiny, width=64, base_width=16, example_input=x)
    explained = torch._dynamo.explain(model)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
