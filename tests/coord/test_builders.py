"""The coordinate check along depth (hptransfer.coord._builders): one width, several depths; plain μP
lets the readout's update grow with depth, CompleteP keeps it flat."""

from __future__ import annotations

import pytest

import hptransfer as hpt
from hptransfer.coord._builders import stream_modules
from hptransfer.errors import CoordCheckError
from hptransfer.models import gpt
from hptransfer.tasks import get_task


def gpt_bytes(width: int, depth: int):
    return gpt(width, n_layer=depth, n_head=2, vocab_size=256, block_size=16)


@pytest.fixture(scope="module")
def by_rule():
    task = get_task("charlm", block_size=16)
    return {p: hpt.coord_check(gpt_bytes, widths=[32], depths=[2, 4, 8], parametrization=p, task=task, steps=2,
                               seeds=(0,), batch_size=8) for p in ("mup", "completep")}


@pytest.mark.slow  # 9 s: two coordinate checks at 3 depths; the depth builder's fast guards are below
def test_completep_passes_along_depth_and_mup_fails_on_the_readout(by_rule):
    mup, completep = by_rule["mup"], by_rule["completep"]
    assert completep.passed, completep.failing[:3]
    assert not mup.passed and mup.failing[0][0] in ("ln_f", "lm_head", "(model)") and mup.failing[0][2] == "update"
    assert completep.widths == [2, 4, 8]  # the fitted points are the depths


def test_only_modules_outside_the_stack_are_fitted():
    # the depth builder end to end at its cheapest (one step, two depths); the verdict test above is slow
    res = hpt.coord_check(gpt_bytes, widths=[32], depths=[2, 4], parametrization="completep", steps=1, seeds=(0,),
                          task=get_task("charlm", block_size=16), batch_size=4)
    assert set(res.modules) == {"wte", "wpe", "ln_f", "lm_head", "(model)"} and res.widths == [2, 4]
    assert stream_modules(["blocks.0", "blocks.0.attn", "h.3.mlp#2", "ln_f"]) == ["ln_f"]


def test_depth_axis_holds_one_width():
    with pytest.raises(CoordCheckError, match="holds the width fixed"):
        hpt.coord_check(gpt_bytes, widths=[16, 32], depths=[2, 4], task="charlm")
