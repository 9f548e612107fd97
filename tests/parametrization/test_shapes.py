"""Shape inference: roles from which axes grow with width, on the model zoo and user models, and
every user error it reports (hptransfer.parametrization._shapes)."""

from __future__ import annotations

import functools

import pytest
import torch
from _helpers import GLUMLP, LSTMLM, MHAModel
from torch import nn

import hptransfer as hpt
from hptransfer.errors import FactoryError, ShapeInferenceError
from hptransfer.models import cnn, gpt, mlp
from hptransfer.parametrization._shapes import width_role


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

    with pytest.raises(FactoryError, match=r"width=64 \(the requested width\).*too wide"):
        hpt.parametrize(factory, width=64, base_width=16)
    with pytest.raises(FactoryError, match=r"width=32 \(the probe width"):
        hpt.parametrize(lambda w: mlp(w) if w != 32 else None, width=24, base_width=16)


def test_a_factory_refusing_the_probe_width_is_told_about_the_probe_not_the_device():
    def factory(w):
        if w not in (16, 24):
            raise ValueError("only 16 and 24 supported")
        return mlp(w)

    with pytest.raises(FactoryError) as err:
        hpt.parametrize(factory, width=24, base_width=16)
    msg = str(err.value)
    assert "width=32 (the probe width" in msg and "only 16 and 24 supported (on the meta device and on the CPU)" in msg
    assert "any device" not in msg and "probe_width=" in msg
    assert hpt.parametrize(factory, width=24, base_width=16, probe_width=24) is not None

    def meta_only(w):  # fails on the meta device alone: there the device is the fix
        if torch.empty(0).is_meta:
            raise NotImplementedError("Cannot copy out of meta tensor")
        return mlp(w)

    assert hpt.parametrize(meta_only, width=24, base_width=16) is not None  # retried on the CPU


@pytest.mark.parametrize("role, setting", [("proxy", "widths.proxy"), ("target", "widths.target"),
                                           ("check", "check.widths")])
def test_factory_error_names_the_role_and_a_fix_that_applies(role: str, setting: str) -> None:
    def factory(w):
        raise ValueError("too wide for this toy")

    with width_role(role), pytest.raises(FactoryError) as err:
        hpt.parametrize(factory, width=64, base_width=16)
    msg = str(err.value)
    assert f"width=64 (the {role} width)" in msg and setting in msg and "head count" not in msg

    def heads(w):
        raise ValueError(f"embed_dim {w} must be divisible by num_heads")

    with width_role(role), pytest.raises(FactoryError, match="head count"):
        hpt.parametrize(heads, width=64, base_width=16)
    with pytest.raises(FactoryError, match="not an nn.Module"):
        hpt.parametrize(lambda w: "model", width=24, base_width=16)


def test_lstm_roles():
    t = hpt.scaling_table(hpt.parametrize(LSTMLM, width=64, base_width=16))
    assert t.params["rnn.weight_hh_l0"].role == "hidden" and t.params["rnn.weight_hh_l0"].fan_in_mult == 4
    assert t.params["rnn.weight_ih_l0"].role == "hidden" and t.params["rnn.bias_ih_l0"].role == "input"
