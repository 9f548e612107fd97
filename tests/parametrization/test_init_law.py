"""Init detection: the factory's own init law is measured, classified and rescaled to μP."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import charlm
from _models import nanogpt
from torch import nn

import hptransfer as hpt
from hptransfer.models import mlp
from hptransfer.parametrization import ScalingTable

BASE, WIDTH = 32, 128  # m = 4


def _seeded(factory, seed=0, **kw):
    torch.manual_seed(seed)
    return hpt.parametrize(factory, **kw) if kw else factory(WIDTH)


def test_nanogpt_classes_and_depth_factor_are_recorded():
    table = hpt.scaling_table(hpt.parametrize(nanogpt, width=WIDTH, base_width=BASE))
    p = table.params
    assert p["transformer.h.0.attn.c_attn.weight"].init_class == "constant"
    assert p["transformer.h.0.attn.c_proj.weight"].init_class == "constant"
    assert p["transformer.h.0.attn.c_attn.bias"].init_class == "zero"
    assert p["transformer.h.0.ln_1.weight"].init_class == "constant"
    # The depth factor 1/sqrt(2 n_layer) shows in the measured base-width RMS and is kept.
    assert p["transformer.h.0.attn.c_proj.weight"].init_rms == pytest.approx(0.02 / 2, rel=0.05)
    assert p["transformer.h.0.attn.c_attn.weight"].sp_correction == pytest.approx(0.5)  # m^-1/2
    assert "constant (0.0" in table.summary()
    again = ScalingTable.from_dict(table.to_dict())
    assert again.params["transformer.h.0.attn.c_proj.weight"].init_class == "constant"


def test_nanogpt_is_bit_identical_at_the_base_width():
    x = torch.randint(0, 256, (2, 16))
    plain = _seeded(lambda w: nanogpt(BASE))
    mu = _seeded(nanogpt, width=BASE, base_width=BASE)
    for (name, a), b in zip(plain.state_dict().items(), mu.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(plain(x), mu(x))


def test_nanogpt_own_draw_is_rescaled_not_redrawn():
    plain = _seeded(nanogpt)
    mu = _seeded(nanogpt, width=WIDTH, base_width=BASE)
    for name in ("transformer.h.0.attn.c_proj.weight", "transformer.h.1.mlp.c_fc.weight"):
        assert torch.equal(mu.get_parameter(name), plain.get_parameter(name) * 0.5), name  # 1/sqrt(m)
    assert torch.equal(mu.transformer.wte.weight, plain.transformer.wte.weight)  # tied: input-like
    assert not mu.transformer.h[0].attn.c_attn.bias.any()  # zeros stay zero
    groups = {n: g["lr"] for g in hpt.param_groups(mu, lr=1.0) for n in g["param_names"]}
    hidden = [lr for name, lr in groups.items() if name.endswith("c_fc.weight")]
    assert hidden and all(lr == pytest.approx(1 / 4) for lr in hidden)


def test_base_std_stays_an_explicit_redraw():
    mu = _seeded(nanogpt, width=WIDTH, base_width=BASE, base_std=0.02)
    table = hpt.scaling_table(mu)
    c_proj = mu.transformer.h[0].attn.c_proj.weight
    assert float(c_proj.detach().std()) == pytest.approx(0.02 / math.sqrt(4), rel=0.05)  # depth factor discarded
    assert table.options["base_std"] == 0.02


class _Laws(nn.Module):
    """One hidden matrix per init law: PyTorch default, constant, std 1/fan_in (structured)."""

    def __init__(self, width: int):
        super().__init__()
        self.inp = nn.Linear(8, width)
        self.default = nn.Linear(width, width)
        self.const = nn.Linear(width, width, bias=False)
        self.inv = nn.Linear(width, width, bias=False)
        self.out = nn.Linear(width, 3)
        nn.init.normal_(self.const.weight, std=0.05)
        nn.init.normal_(self.inv.weight, std=1.0 / width)

    def forward(self, x):
        return self.out(self.inv(self.const(self.default(self.inp(x)))))


def test_each_law_is_classified_and_brought_to_one_over_fan_in():
    mu = _seeded(_Laws, width=4 * BASE, base_width=BASE)
    p = hpt.scaling_table(mu).params
    assert p["default.weight"].init_class == "fan_in" and p["default.weight"].sp_correction == 1.0
    assert p["default.bias"].init_class == "fan_in"  # U(+-1/sqrt(fan_in)): μP makes it constant
    assert p["const.weight"].init_class == "constant" and p["const.weight"].sp_correction == pytest.approx(0.5)
    assert p["inv.weight"].init_class == "structured"
    assert p["inv.weight"].init_exponent == pytest.approx(-1.0, abs=0.1)
    # Every hidden matrix now has the std its base-width draw would have under a 1/fan_in law.
    for name, base_std in (("const.weight", 0.05), ("inv.weight", 1.0 / BASE)):
        assert float(mu.get_parameter(name).detach().std()) == pytest.approx(base_std / 2, rel=0.1), name


def test_measuring_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    nanogpt(WIDTH)
    expected = torch.rand(4)
    torch.manual_seed(3)
    hpt.parametrize(nanogpt, width=WIDTH, base_width=BASE)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("parametrization, passes", [("mup", True), ("sp", False)])
def test_nanogpt_coord_check_with_default_options(parametrization, passes):
    result = hpt.coord_check(nanogpt, widths=(32, 64, 128), parametrization=parametrization, task=charlm(),
                             batch_size=8, steps=2, seeds=(0, 1))
    assert result.passed is passes, result.failing[:3]


def test_the_init_measurement_is_made_once_per_factory_and_widths() -> None:
    """A sweep parametrizes one factory at every width and seed; the factory's init is measured once
    (its draws are seeded), and a factory whose state could change between calls is measured every time."""
    from hptransfer.parametrization._init_law import clear_cache

    calls: list[int] = []

    def counted(width: int) -> nn.Module:
        calls.append(width)
        return mlp(width)

    clear_cache()
    first = hpt.parametrize(counted, width=64, base_width=16)
    built = len(calls)
    second = hpt.parametrize(counted, width=128, base_width=16)  # another target width: same base and probe
    assert len(calls) - built <= 3  # the target and the two meta builds only: no measurement draws
    assert [i.init_class for i in hpt.scaling_table(first).params.values()] == \
        [i.init_class for i in hpt.scaling_table(second).params.values()]

    class Stateful:  # a callable object: its state could differ between calls, so nothing is kept
        def __call__(self, width: int) -> nn.Module:
            calls.append(width)
            return mlp(width)

    stateful = Stateful()
    hpt.parametrize(stateful, width=64, base_width=16)
    built = len(calls)
    hpt.parametrize(stateful, width=128, base_width=16)
    assert len(calls) - built > 3


class _PosModel(nn.Module):
    """Token embedding plus a learned positional table, written three ways."""

    def __init__(self, width: int, kind: str, T: int = 8) -> None:
        super().__init__()
        self.kind = kind
        self.tok = nn.Embedding(32, width)
        if kind == "embedding":
            self.pos = nn.Embedding(T, width)
        else:  # nanoGPT-style raw tables (ViT's pos_embed is the 3-D form)
            self.pos = nn.Parameter(torch.randn(T, width) * 0.02 if kind != "raw-3d" else torch.randn(1, T, width))
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if self.kind == "embedding":
            pos = self.pos(torch.arange(T))
        elif self.kind == "raw-indexed":
            pos = self.pos[:T]
        elif self.kind == "raw-broadcast":
            pos = self.pos  # added to every sequence of the batch as is
        else:
            pos = self.pos[:, :T]
        return self.out(torch.relu(self.hidden(self.tok(x) + pos)))


@pytest.mark.parametrize("kind", ["raw-indexed", "raw-broadcast", "raw-3d"])
def test_a_raw_positional_table_follows_the_rules_of_nn_embedding(kind):
    """A (T, width) tensor's layout looks like a Linear weight with a growing fan-in; used by indexing or
    broadcasting it is a table, and gets nn.Embedding's rules: input role, its own init kept (not x1/sqrt(m)),
    the base LR."""
    x = torch.randint(0, 32, (2, 8))
    got = {}
    for k in (kind, "embedding"):
        torch.manual_seed(0)
        own = dict(_PosModel(64, k).named_parameters())
        torch.manual_seed(0)
        model = hpt.parametrize(lambda w, k=k: _PosModel(w, k), width=64, base_width=16, example_input=x)
        name = "pos.weight" if k == "embedding" else "pos"
        info = hpt.scaling_table(model).info(name)
        lr = next(g["lr_mult"] for g in hpt.param_groups(model, lr=1.0) if name in g["param_names"])
        assert torch.equal(dict(model.named_parameters())[name], own[name]), k  # the factory's draw, as is
        got[k] = (info.role, info.init_class, info.init_scale, lr)
    assert got[kind] == got["embedding"] == ("input", "constant", 1.0, 1.0)
