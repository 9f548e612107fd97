"""The adaptive check: the full grid's verdicts and intervals from a fraction of its runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import LR_GRID, BowlRunner, bowl_check

from hptransfer.check._adaptive import next_points


def test_next_points_brackets_then_refines() -> None:
    nan = math.nan
    curve = np.full(12, nan)
    assert next_points(curve, start=5, stride=2, refine=2) == [3, 5, 7]
    curve[[3, 5, 7]] = [1.0, 0.9, 0.8]  # still falling upwards: walk an octave up
    assert next_points(curve, start=5, stride=2, refine=2) == [9]
    curve[9] = 0.95  # bracketed at 7: refine 5..9 and run the anchors
    assert next_points(curve, start=5, stride=2, refine=2, anchors=[2]) == [2, 6, 8]
    curve[[2, 6, 8]] = [1.1, 0.85, 0.82]
    assert next_points(curve, start=5, stride=2, refine=2, anchors=[2]) == []
    # Everything run so far diverged: look an octave lower.
    div = np.full(12, nan)
    div[[6, 8]] = math.inf
    assert next_points(div, start=8, stride=2, refine=2) == [4]


def test_the_first_width_surveys_the_grid_so_a_second_valley_is_not_missed() -> None:
    # Two valleys two octaves apart (the GPT char-LM at width 32 looked like this): a bracket from
    # a start in the shallower valley settles there; the survey sees both.
    curve_full = np.array([0.05, 0.02, 0.0, 0.10, 0.30, 0.12, 0.06, 0.03, 0.08, 0.2, 0.4, 0.6, 0.8, 1.0])
    for survey, want in ((False, 7), (True, 2)):
        curve = np.full(14, math.nan)
        while idx := next_points(curve, start=8, stride=2, refine=2, survey=survey):
            curve[idx] = curve_full[idx]
        assert int(np.nanargmin(curve)) == want


@pytest.mark.parametrize("start", [2.0 ** -13, 2.0 ** -9, 2.0 ** -6])
def test_same_verdicts_and_intervals_as_the_full_grid_at_a_fraction_of_the_runs(start: float) -> None:
    full_runner, runner = BowlRunner({"sp": -0.75, "mup": 0.0}), BowlRunner({"sp": -0.75, "mup": 0.0})
    full = bowl_check(full_runner)
    cheap = bowl_check(runner, strategy="adaptive", start=start)
    assert cheap.passed and full.passed  # SP fails and μP passes in both
    assert runner.calls <= 0.5 * full_runner.calls, (runner.calls, full_runner.calls)
    assert cheap.config["runs_trained"] == runner.calls and cheap.config["grid_runs"] == full_runner.calls
    for a, b in zip(full.results, cheap.results):
        assert (a.parametrization, a.verdict) == (b.parametrization, b.verdict)
        assert b.drift.slope == pytest.approx(a.drift.slope, abs=0.02)
        half_a, half_b = (a.drift.hi - a.drift.lo) / 2, (b.drift.hi - b.drift.lo) / 2
        assert half_b <= 1.2 * half_a + 1e-3
        assert b.regret_rel == pytest.approx(a.regret_rel, abs=0.002)
        assert b.n_missing == 0


def test_an_optimum_outside_the_grid_is_still_grid_too_narrow() -> None:
    runner = BowlRunner({"sp": -0.75, "mup": 0.0})
    rep = bowl_check(runner, grid={"lr": [v for v in LR_GRID if v >= 2.0 ** -8]}, parametrizations=["mup"],
                     expect={"mup": "any"}, strategy="adaptive", start=2.0 ** -5)
    assert rep.results[0].verdict == "grid too narrow"


def test_the_first_width_starts_at_the_given_value() -> None:
    # check_grid once shadowed `start` with its wall-clock timer, so a recipe's tuned LR never
    # reached the adaptive sweep (it started at the top of the grid instead).
    class Recording(BowlRunner):
        def __call__(self, parametrization, width, seed, hps):
            self.seen.append((width, math.log2(hps["lr"])))
            return super().__call__(parametrization, width, seed, hps)

    runner = Recording({"mup": 0.0})
    runner.seen = []
    bowl_check(runner, parametrizations=["mup"], expect={"mup": "any"}, strategy="adaptive", start=2.0 ** -13.5)
    first_width = [x for w, x in runner.seen if w == 64]
    assert -13.5 in first_width
