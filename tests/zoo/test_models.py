"""Reference model factories: shapes, parameter names, meta-device builds, errors."""

from __future__ import annotations

import pytest
import torch

from hptransfer.errors import FactoryError, HPTransferError
from hptransfer.models import MODELS, cnn, get_model, gpt, mlp, resglu

WIDTHS = (32, 64)


def _input_for(name: str, batch: int = 3) -> torch.Tensor:
    if name in ("mlp", "resglu"):
        return torch.randn(batch, 32)
    if name == "gpt":
        return torch.randint(0, 256, (batch, 16))
    return torch.randn(batch, 3, 8, 8)


def _expected_out(name: str, batch: int = 3) -> tuple[int, ...]:
    return {"mlp": (batch, 10), "gpt": (batch, 16, 256), "cnn": (batch, 10), "resglu": (batch, 10)}[name]


FACTORIES = {"mlp": mlp, "gpt": gpt, "cnn": cnn, "resglu": resglu}


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("width", WIDTHS)
def test_factory_builds_and_forward_shape(name: str, width: int) -> None:
    model = FACTORIES[name](width)
    assert isinstance(model, torch.nn.Module)
    out = model(_input_for(name))
    assert out.shape == _expected_out(name)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("width", WIDTHS)
def test_factory_builds_on_meta(name: str, width: int) -> None:
    with torch.device("meta"):
        model = FACTORIES[name](width)
        out = model(_input_for(name))
    assert all(p.device.type == "meta" for p in model.parameters())
    assert out.device.type == "meta"
    assert out.shape == _expected_out(name)
    # Same parameter names and shapes as a CPU build: tools compare the two.
    cpu = {n: p.shape for n, p in FACTORIES[name](width).named_parameters()}
    assert {n: p.shape for n, p in model.named_parameters()} == cpu


def test_mlp_parameter_names_and_shapes() -> None:
    model = mlp(64, depth=4, d_in=7, n_classes=5)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes == {
        "input.weight": (64, 7),
        "input.bias": (64,),
        "hidden.0.weight": (64, 64),
        "hidden.0.bias": (64,),
        "hidden.1.weight": (64, 64),
        "hidden.1.bias": (64,),
        "readout.weight": (5, 64),
        "readout.bias": (5,),
    }
    assert mlp(8, depth=2, bias=False, activation="tanh")(torch.randn(2, 32)).shape == (2, 10)
    assert not any("bias" in n for n, _ in mlp(8, bias=False).named_parameters())


def test_gpt_parameter_names() -> None:
    names = {n for n, _ in gpt(32, n_layer=1).named_parameters()}
    for expected in (
        "wte.weight",
        "wpe.weight",
        "blocks.0.ln1.weight",
        "blocks.0.attn.q_proj.weight",
        "blocks.0.attn.k_proj.weight",
        "blocks.0.attn.v_proj.weight",
        "blocks.0.attn.o_proj.weight",
        "blocks.0.ln2.weight",
        "blocks.0.mlp.fc.weight",
        "blocks.0.mlp.proj.weight",
        "ln_f.weight",
        "lm_head.weight",
    ):
        assert expected in names
    assert "lm_head.bias" not in names


def test_gpt_tied_shares_the_tensor() -> None:
    model = gpt(32, tied=True)
    assert model.lm_head.weight is model.wte.weight
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in names  # the tied tensor is reported once
    untied = gpt(32)
    assert untied.lm_head.weight is not untied.wte.weight
    with torch.device("meta"):
        meta = gpt(32, tied=True)
    assert meta.lm_head.weight is meta.wte.weight


@pytest.mark.parametrize("width", WIDTHS)
def test_gpt_head_modes(width: int) -> None:
    # Default: fixed head count, head size grows with width.
    fixed_heads = gpt(width, n_head=4)
    attn = fixed_heads.blocks[0].attn
    assert (attn.n_head, attn.head_dim) == (4, width // 4)
    # Explicit head_dim: fixed head size, head count grows with width.
    fixed_dim = gpt(width, head_dim=8)
    attn = fixed_dim.blocks[0].attn
    assert (attn.n_head, attn.head_dim) == (width // 8, 8)
    assert attn.q_proj.weight.shape == (width, width)
    x = torch.randint(0, 256, (2, 64))
    assert fixed_heads(x).shape == fixed_dim(x).shape == (2, 64, 256)


def test_gpt_variants() -> None:
    model = gpt(32, glu=True, norm="rmsnorm", bias=False, n_layer=1, vocab_size=50)
    mlp_block = model.blocks[0].mlp
    hidden = mlp_block.fc.out_features
    assert hidden == mlp_block.gate.out_features == mlp_block.proj.in_features
    assert hidden % 8 == 0
    assert isinstance(model.ln_f, torch.nn.RMSNorm)
    assert not any("bias" in n for n, _ in model.named_parameters())
    assert model(torch.randint(0, 50, (2, 5))).shape == (2, 5, 50)
    plain = gpt(32, bias=False)
    assert not any("bias" in n for n, _ in plain.named_parameters())


def test_gpt_is_causal() -> None:
    torch.manual_seed(0)
    model = gpt(32, n_layer=1).eval()
    x = torch.randint(0, 256, (1, 10))
    y = x.clone()
    y[0, 7] = (x[0, 7] + 1) % 256
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[0, :7], b[0, :7])
    assert not torch.allclose(a[0, 7:], b[0, 7:])


def test_gpt_uses_sdpa_without_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append({"shape": tuple(q.shape), **kwargs})
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    gpt(32, n_layer=2, n_head=4)(torch.randint(0, 256, (2, 9)))
    assert len(calls) == 2
    assert calls[0] == {"shape": (2, 4, 9, 8), "is_causal": True}


def test_gpt_rejects_too_long_input() -> None:
    with pytest.raises(HPTransferError, match="block_size"):
        gpt(32, block_size=8)(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        (lambda: gpt(30, n_head=4), "width"),
        (lambda: gpt(36, head_dim=8), "width"),
        (lambda: gpt(0), "width"),
        (lambda: gpt(32, n_head=0), "n_head"),
        (lambda: gpt(32, norm="batchnorm"), "norm"),
        (lambda: mlp(0), "width"),
        (lambda: mlp(16.0), "width"),
        (lambda: mlp(True), "width"),
        (lambda: mlp(16, depth=1), "depth"),
        (lambda: mlp(16, activation="swish"), "activation"),
        (lambda: cnn(30), "width"),
        (lambda: cnn(32, in_channels=0), "in_channels"),
        (lambda: resglu(0), "width"),
        (lambda: resglu(16, blocks=0), "blocks"),
        (lambda: resglu(16, mlp_ratio=0), "mlp_ratio"),
    ],
)
def test_bad_arguments_raise_factory_error(call, arg: str) -> None:
    with pytest.raises(FactoryError, match=f"'{arg}'"):
        call()


def test_registry() -> None:
    assert MODELS["mlp"] is mlp and MODELS["gpt"] is gpt
    assert get_model("gpt") is gpt
    assert MODELS["resglu"] is resglu


def test_resglu_parameter_names_and_trainable_norm_gains() -> None:
    names = {n: tuple(p.shape) for n, p in resglu(16, blocks=1).named_parameters()}
    assert names == {
        "input.weight": (16, 32), "blocks.0.norm.weight": (16,), "blocks.0.mlp.fc.weight": (32, 16),
        "blocks.0.mlp.gate.weight": (32, 16), "blocks.0.mlp.proj.weight": (16, 32), "norm.weight": (16,),
        "readout.weight": (10, 16)}


def test_registry_lists_names() -> None:
    with pytest.raises(FactoryError, match="gpt, mlp"):
        get_model("resnet")
