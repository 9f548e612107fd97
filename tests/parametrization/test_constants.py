"""Width-dependent constants in a model's forward (``embedding(x) * sqrt(d_model)``, Gemma's
embed_scale) are held at their base-width value under μP, found with or without an example input;
width-independent constants, constants inside attention and SP are left alone."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _helpers import hpt_warns
from _models import ScaledEmbedding, TutorialLM
from torch import nn

import hptransfer as hpt
from hptransfer.parametrization import ScalingTable
from hptransfer.zoo import get_task

X = torch.randint(0, 256, (2, 16))


def _held(model: nn.Module) -> list[tuple[str, str, float]]:
    return [(m.module, m.kind, m.multiplier) for m in hpt.scaling_table(model).module_scalings
            if "constant" in m.reason]


def _input_of(model: nn.Module, module: str, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = model.get_submodule(module).register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


class ScaledLM(nn.Module):
    """An embedding that scales itself by sqrt(dim) (Gemma), a hidden layer and a readout."""

    def __init__(self, width: int):
        super().__init__()
        self.embed = ScaledEmbedding(256, width)
        self.fc = nn.Linear(width, width)
        self.head = nn.Linear(width, 256)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(self.embed(idx))))


class Fixed(nn.Module):
    """A width-independent constant on the embedding, and a query scaled by d**-0.5 before a
    hand-written softmax attention (the attention rewrite's business, not this one's)."""

    def __init__(self, width: int):
        super().__init__()
        self.embed = nn.Embedding(256, width)
        self.attn = HandAttention(width)
        self.head = nn.Linear(width, 256)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(self.embed(idx) * 2.0))


class HandAttention(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x) * x.shape[-1] ** -0.5
        return torch.softmax(q @ self.k(x).transpose(-2, -1), dim=-1) @ self.v(x)


def test_a_callers_sqrt_width_on_the_embedding_is_held_at_the_base_value():
    model = hpt.parametrize(TutorialLM, width=256, base_width=64, example_input=X)
    assert _held(model) == [("embedding", "constant", 0.5)]  # sqrt(64) / sqrt(256)
    # what the encoder sees is the embedding's rows x sqrt(64), the base width's constant, not x sqrt(256)
    torch.testing.assert_close(_input_of(model, "pos_encoder", X), model.embedding.weight[X] * 8.0)
    note = " ".join(hpt.scaling_table(model).notes)
    assert "'embedding'" in note and "width^0.5" in note


def test_a_constant_the_module_applies_itself_is_read_for_real_and_held():
    # the sqrt(dim) lives in a buffer: the meta trace cannot read it, the real trace does
    model = hpt.parametrize(ScaledLM, width=256, base_width=64, example_input=X)
    assert _held(model) == [("embed", "output", 0.5)]
    torch.testing.assert_close(model.embed(X), model.embed.weight[X] * 8.0)


def test_sp_the_base_width_and_width_independent_or_attention_constants_are_left_alone():
    assert _held(hpt.parametrize(TutorialLM, width=256, base_width=64, parametrization="sp", example_input=X)) == []
    torch.manual_seed(0)
    same = hpt.parametrize(TutorialLM, width=64, base_width=64, example_input=X)
    torch.manual_seed(0)
    assert _held(same) == [] and torch.equal(same(X), TutorialLM(64)(X))
    with hpt_warns("attention computed by hand"):
        assert _held(hpt.parametrize(Fixed, width=256, base_width=64, example_input=X)) == []


def test_without_an_example_input_the_first_forward_finds_them():
    torch.manual_seed(0)
    lazy = hpt.parametrize(TutorialLM, width=128, base_width=32)
    torch.manual_seed(0)
    eager = hpt.parametrize(TutorialLM, width=128, base_width=32, example_input=X)
    first = lazy(X)  # traced here; the hooks already apply to this call
    assert _held(lazy) == _held(eager) == [("embedding", "constant", 0.5)]
    torch.testing.assert_close(first, eager(X))
    torch.testing.assert_close(lazy(X), first)


def test_the_hold_survives_deepcopy_and_a_table_restored_from_json():
    model = hpt.parametrize(TutorialLM, width=128, base_width=32, example_input=X)
    ref = model(X)
    torch.testing.assert_close(copy.deepcopy(model)(X), ref)
    fresh = TutorialLM(128)
    fresh.load_state_dict(model.state_dict())
    hpt.attach_table(fresh, ScalingTable.from_dict(hpt.scaling_table(model).to_dict()))
    torch.testing.assert_close(fresh(X), ref)


@pytest.mark.parametrize("parametrization, passes", [("mup", True), ("sp", False)])
def test_the_tutorial_transformer_passes_its_coordinate_check_under_mup_with_default_options(parametrization,
                                                                                             passes):
    # Measured without the hold: μP fails here on the positional encoder (update slope +0.5).
    result = hpt.coord_check(TutorialLM, widths=(32, 64, 128), parametrization=parametrization, steps=3,
                             task=get_task("charlm", block_size=16, n_bytes=200_000), batch_size=8, seeds=(0, 1))
    assert result.passed is passes, result.failing[:3]
    if passes:  # the embedding is measured as its own output (before the hold): width-stable too
        assert all(abs(s) < 0.1 for s in result.slopes["embedding"])


class SharedIdentity(nn.Module):
    """One nn.Identity run twice per forward; only its second output is scaled by sqrt(width)."""

    def __init__(self, width: int):
        super().__init__()
        self.embed, self.same = nn.Embedding(256, width), nn.Identity()
        self.fc, self.head = nn.Linear(width, width), nn.Linear(width, 256)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.fc(self.same(self.embed(idx)))
        return self.head(self.same(h) * math.sqrt(h.shape[-1]))


def test_a_module_run_twice_is_reported_not_hooked():
    # a hook would multiply both calls, the embedding's too: T5's decoder dropout is such a module
    table = hpt.scaling_table(hpt.parametrize(SharedIdentity, width=256, base_width=64, example_input=X))
    assert [m for m in table.module_scalings if "constant" in m.reason] == []
    assert any("'same'" in n and "more than once" in n for n in table.notes)


class SimpleRMSNorm(nn.Module):
    """x-transformers' SimpleRMSNorm: ``F.normalize(x) * dim ** 0.5``. Its sqrt(dim) compensates the
    1/sqrt(dim) entries of a unit vector: the output is width-stable as written."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, dim=-1) * self.scale


class NormedLM(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.embed, self.norm = nn.Embedding(256, width), SimpleRMSNorm(width)
        self.fc, self.head = nn.Linear(width, width), nn.Linear(width, 256)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(self.norm(self.embed(idx)))))


def test_a_constant_that_compensates_its_input_is_left_alone():
    # measured for real: the normalised vector's RMS falls as width^-0.5, the product's stays put
    table = hpt.scaling_table(hpt.parametrize(NormedLM, width=256, base_width=64, example_input=X))
    assert table.module_scalings == [m for m in table.module_scalings if "constant" not in m.reason]
    assert not any("constant" in n for n in table.notes)
