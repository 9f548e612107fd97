"""The verdict of one swept HP: a grid too narrow, infinite regret (hptransfer.check._verdict)."""

from __future__ import annotations

import math

import pytest
from _helpers import LR_GRID, BowlRunner, bowl_check


def test_optimum_on_the_edge_is_grid_too_narrow_with_a_suggested_range():
    rep = bowl_check(grid={"lr": LR_GRID[:9]}, parametrizations=["sp"], expect={"sp": "fail"})
    r = rep.result("sp")
    assert r.verdict == "grid too narrow" and not rep.passed  # never a silent pass, not even a "fail"
    lo, hi = r.next_range
    assert lo == pytest.approx(LR_GRID[0]) and hi > LR_GRID[8]  # SP's optimum left the grid upwards
    assert any("grid too narrow" in s for s in r.reasons)


def test_proxy_optimum_diverging_at_the_widest_width_is_infinite_regret():
    rep = bowl_check(runner=BowlRunner({"sp": -2.0, "mup": 0.0}), widths=[64, 128, 256],
                 grid={"lr": [2.0 ** (k / 2) for k in range(-34, -11)]})
    sp = rep.result("sp")
    assert sp.regret == math.inf and sp.verdict == "fail"
    assert any("diverges" in s for s in sp.reasons)
