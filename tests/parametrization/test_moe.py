"""A mixture of experts written by hand: experts stored as one 3-D tensor are stacks of hidden
matrices, and with an example input the router (width -> experts) is told from the readout by
what the model returns; without one the ambiguity is an error naming both and the fix."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hptransfer as hpt
from hptransfer.errors import ShapeInferenceError
from hptransfer.zoo import get_task

X = torch.randint(0, 256, (2, 16))


class MoELM(nn.Module):
    """Top-1 routing over experts held as (experts, d_in, d_out) tensors, applied with einsum."""

    def __init__(self, width: int, experts: int = 4):
        super().__init__()
        self.embed, self.norm = nn.Embedding(256, width), nn.LayerNorm(width)
        self.router = nn.Linear(width, experts, bias=False)
        self.w_in = nn.Parameter(torch.randn(experts, width, 4 * width) / math.sqrt(width))
        self.w_out = nn.Parameter(torch.randn(experts, 4 * width, width) / math.sqrt(4 * width))
        self.head = nn.Linear(width, 256)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.embed(idx)
        z = self.norm(h)
        gate = self.router(z).softmax(-1)
        top = gate.argmax(-1)
        y = torch.einsum("btd,btdf->btf", z, self.w_in[top]).relu()
        y = torch.einsum("btf,btfd->btd", y, self.w_out[top]) * gate.max(-1).values.unsqueeze(-1)
        return self.head(h + y)


def test_stacked_experts_are_hidden_and_the_router_is_told_from_the_readout():
    table = hpt.scaling_table(hpt.parametrize(MoELM, width=256, base_width=64, example_input=X))
    for name in ("w_in", "w_out"):
        info = table.params[name]
        assert (info.role, info.fan_in_mult, info.fan_out_mult) == ("hidden", 4, 4)
        assert info.init_class == "fan_in"  # measured along a growing axis of the stack
    router = table.params["router.weight"]
    assert router.role == "output" and not router.readout_module  # read out in place
    assert [(m.module, m.kind) for m in table.module_scalings] == [("head", "input")]
    assert any("router.weight" in n and "in place" in n for n in table.notes)


def test_without_an_example_input_the_ambiguity_is_an_error_with_the_fix():
    with pytest.raises(ShapeInferenceError, match=r"ambiguous readout.*router\.weight.*readout="):
        hpt.parametrize(MoELM, width=256, base_width=64)


@pytest.mark.slow  # 16 s; the MoE roles and base-width exactness are guarded by the fast tests of this file
@pytest.mark.parametrize("parametrization, passes", [("mup", True), ("sp", False)])
def test_the_hand_written_moe_passes_its_coordinate_check_under_mup(parametrization, passes):
    result = hpt.coord_check(MoELM, widths=(32, 64, 128, 256), parametrization=parametrization, steps=3,
                             task=get_task("charlm", block_size=16, n_bytes=200_000), batch_size=8, seeds=(0, 1))
    assert result.passed is passes, result.failing[:3]
