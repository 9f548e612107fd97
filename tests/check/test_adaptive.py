"""The adaptive check: the full grid's verdicts and intervals from a fraction of its runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
import pytest
from _helpers import LR_GRID, BowlRunner, bowl_check

from hptransfer.check._adaptive import (
    contenders,
    impute,
    next_points,
    plan_round,
    prunable,
    replicate_window,
    valley_bottoms,
)
from hptransfer.check._prune import CheckpointPruner, checkpoint_losses
from hptransfer.training import TrainResult


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
    assert runner.calls <= 0.3 * full_runner.calls, (runner.calls, full_runner.calls)
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


def test_an_optimum_just_outside_the_grid_is_walked_to_when_the_check_may_extend_it() -> None:
    class Recording(BowlRunner):
        def __call__(self, parametrization, width, seed, hps):
            self.seen.add(math.log2(hps["lr"]))
            return super().__call__(parametrization, width, seed, hps)

    runner = Recording({"mup": 0.0})
    runner.seen = set()
    narrow = [v for v in LR_GRID if v >= 2.0 ** -8]  # 2^-8 .. 2^-6; the optimum is at 2^-9
    rep = bowl_check(runner, grid={"lr": narrow}, parametrizations=["mup"], expect={"mup": "pass"},
                     strategy="adaptive", start=2.0 ** -7, extend=4)
    res = rep.results[0]
    assert res.verdict == "pass" and all(o.x == pytest.approx(-9.0, abs=0.25) for o in res.optima)
    assert min(runner.seen) <= -9.5  # walked below the grid until the optimum was bracketed ...
    assert max(runner.seen) <= -6.0  # ... and never surveyed the unneeded extension above it
    assert rep.config["extend"] == 4 and rep.config["grid_runs"] == len(narrow) * 4 * 2


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


@dataclass
class CurveRunner:
    """A :class:`BowlRunner` that trains step by step: the training loss at step t is the final loss
    plus ``0.5 (1 - t / steps)``, reported through ``report`` (which may stop the run). Far from the
    valley (3+ octaves) the curve sits 45%+ above the best one all along: hopeless runs."""

    drifts: dict
    steps: int = 20
    steps_run: int = 0
    calls: int = 0
    penalty: float = math.log(10)

    def fingerprint(self) -> str:
        return "curve" + repr(sorted(self.drifts.items()))

    def __call__(self, parametrization, width, seed, hps, report=None):
        self.calls += 1
        final = BowlRunner(self.drifts)(parametrization, width, seed, hps)
        if final.diverged:
            self.steps_run += 2
            return TrainResult(diverged=True, reason="loss above 3 x its start", val_loss=math.inf, steps=2)
        losses = []
        for t in range(self.steps):
            self.steps_run += 1
            losses.append(final.val_loss + 0.5 * (1 - t / self.steps))
            if report is not None:
                report(t, losses[-1])
        return TrainResult(val_loss=final.val_loss, steps=self.steps, losses=losses, seconds=0.001)


def test_the_checkpoint_pruner_stops_a_run_above_the_best_curve_by_the_margin() -> None:
    hook = CheckpointPruner(20, reference=[1.0, 0.9, 0.8], margins=(0.1, 0.1, 0.1))
    for t in range(5):  # checkpoint 1 at step 5: window mean 1.05 <= 1.1 x 1.0
        hook(t, 1.05)
    assert hook.values == [1.05] and hook.stopped_at is None
    with pytest.raises(optuna.TrialPruned):
        for t in range(5, 10):  # checkpoint 2 at step 10: 1.0 > 1.1 x 0.9
            hook(t, 1.0)
    assert hook.stopped_at == 10 and len(hook.losses) == 10
    assert checkpoint_losses([1.0] * 4 + [2.0] * 16, 20) == [1.5, 2.0, 2.0]
    # One margin per checkpoint: 1.5x the reference at 25% is within a margin of 1.0 there.
    early = CheckpointPruner(20, reference=[1.0, 0.9, 0.8], margins=(1.0, 0.1, 0.1))
    for t in range(5):
        early(t, 1.5)
    assert early.stopped_at is None and early.values == [1.5]


def test_a_stopped_point_counts_as_worse_for_bracketing_and_is_rerun_inside_the_window() -> None:
    curve = np.full(12, math.nan)
    curve[[5, 7]] = [0.9, 0.8]
    stopped = np.zeros(12, dtype=bool)
    stopped[9] = True  # stopped early: known worse than the best, so 7 is bracketed
    assert next_points(curve, start=5, stride=2, refine=2, pruned=stopped) == [6, 8, 9]
    assert prunable([1, 6, 9, 10], curve, refine=2, anchors=[10]) == [True, False, False, False]


def test_hopeless_runs_are_stopped_early_and_their_steps_counted() -> None:
    runner = CurveRunner({"sp": -0.75, "mup": 0.0})
    rep = bowl_check(runner, strategy="adaptive", start=2.0 ** -9)
    cfg = rep.config
    assert cfg["runs_pruned"] > 0, cfg
    assert cfg["steps_trained"] == runner.steps_run  # full, diverged and stopped runs, step for step
    assert cfg["steps_trained"] < (cfg["runs_trained"] + cfg["runs_pruned"]) * runner.steps
    assert f"{cfg['runs_pruned']} stopped early; {cfg['steps_trained']} training steps" in rep.summary()


def test_stopping_hopeless_runs_does_not_move_the_optimum_or_the_interval() -> None:
    # Same synthetic landscape with and without early stopping: the stopped runs are 3+ octaves
    # from the valley, so the optima, intervals and verdicts must be identical.
    pruned_runner, full_runner = CurveRunner({"sp": -0.75, "mup": 0.0}), CurveRunner({"sp": -0.75, "mup": 0.0})
    pruned = bowl_check(pruned_runner, strategy="adaptive", start=2.0 ** -9)
    full = bowl_check(full_runner, strategy="adaptive", start=2.0 ** -9, prune_margins=None)
    assert full.config["runs_pruned"] == 0 and pruned.config["runs_pruned"] > 0
    assert pruned_runner.steps_run < full_runner.steps_run
    for a, b in zip(full.results, pruned.results):
        assert (a.verdict, b.n_missing) == (b.verdict, 0)
        assert [o.x for o in a.optima] == [o.x for o in b.optima]
        assert (a.drift.lo, a.drift.hi) == (b.drift.lo, b.drift.hi)


def test_the_refinement_window_holds_every_bootstrap_draws_vertex_points() -> None:
    # Seed 0's argmin is at 3, seed 1's at 5, their mean's at 4: each draw of the seeds (0,0), (0,1),
    # (1,1) needs its argmin and both neighbours for its parabola vertex.
    x = np.arange(10.0)
    losses = np.stack([0.1 * (x - 3) ** 2, 0.1 * (x - 5) ** 2], axis=1)
    assert replicate_window(losses) == [2, 3, 4, 5, 6]
    same = np.stack([0.1 * (x - 4) ** 2] * 2, axis=1)  # seeds agree: three points suffice
    assert replicate_window(same) == [3, 4, 5]


def test_the_survey_skips_the_top_edge_within_an_octave_of_its_last_point() -> None:
    assert next_points(np.full(14, math.nan), start=0, stride=2, refine=2, survey=True) == [0, 4, 8, 12]
    assert next_points(np.full(16, math.nan), start=0, stride=2, refine=2, survey=True) == [0, 4, 8, 12, 15]


class SeedRecording(BowlRunner):
    """A :class:`BowlRunner` that records every (width, seed, log2 lr) it is asked for."""

    def __call__(self, parametrization, width, seed, hps):
        self.seen.append((parametrization, width, seed, math.log2(hps["lr"])))
        return super().__call__(parametrization, width, seed, hps)


def test_the_lead_seed_explores_alone_and_the_analysis_reads_whole_points_only() -> None:
    runner = SeedRecording({"sp": -0.75, "mup": 0.0})
    runner.seen = []
    rep = bowl_check(runner, strategy="adaptive", start=2.0 ** -13)
    for par in ("sp", "mup"):
        lead = {x for p, w, s, x in runner.seen if (p, w, s) == (par, 64, 0)}
        other = {x for p, w, s, x in runner.seen if (p, w, s) == (par, 64, 1)}
        assert other < lead and len(other) <= len(lead) - 3, (sorted(lead), sorted(other))  # survey/walk: one seed
    for r in rep.results:  # a point run at the lead seed only is NaN at every seed for the analysis
        missing = np.isnan(r.losses)
        assert (missing.any(axis=-1) == missing.all(axis=-1)).all()
        assert (~missing.all(axis=-1)).sum() < missing.shape[0] * missing.shape[1]


def test_impute_fills_a_missing_seed_with_its_mean_or_its_most_favourable_offset() -> None:
    nan = math.nan
    losses = np.array([[1.0, 0.8], [0.9, 0.85], [0.95, nan], [nan, nan], [math.inf, nan]])
    mean = impute(losses)
    assert mean[2, 1] == pytest.approx(0.95 - 0.125) and np.isnan(mean[3]).all() and np.isinf(mean[4]).all()
    assert impute(losses, hopeful=True)[2, 1] == pytest.approx(0.95 - 0.2)
    assert impute(np.array([[1.0, nan], [0.9, nan]]))[:, 1].tolist() == [1.0, 0.9]  # nothing to offset by yet


def test_a_lead_only_point_another_seed_could_make_its_best_is_a_contender() -> None:
    nan = math.nan
    # Seed 1 has favoured a point by up to 0.2 over the lead seed: at 0.95 on the lead seed, point 3
    # could be 0.75 on seed 1, below seed 1's best 0.8. Point 4 could not (1.2 - 0.2 = 1.0).
    losses = np.array([[1.0, 0.8], [0.9, 0.85], [1.5, 1.5], [0.95, nan], [1.2, nan]])
    assert contenders(losses) == [3]
    assert 3 not in replicate_window(losses)  # the mean offset alone would dismiss it
    assert contenders(np.array([[1.0, 0.8], [0.9, 0.85], [1.2, nan]])) == []


def test_valley_bottoms_are_the_run_points_below_their_run_neighbours() -> None:
    nan = math.nan
    curve = np.array([0.3, nan, 0.1, nan, 0.25, 0.2, 0.22, 0.05, math.inf, nan])
    assert valley_bottoms(curve) == [2, 5, 7]
    assert valley_bottoms(np.array([0.1, 0.2, nan])) == [0]


@dataclass
class LossRunner:
    """A check runner whose final loss is ``loss(width, seed, log2 lr)`` (None: diverged)."""

    loss: Callable[[int, int, float], float | None]
    name: str
    calls: int = 0
    penalty: float = math.log(10)

    def fingerprint(self) -> str:
        return self.name

    def __call__(self, parametrization, width, seed, hps):
        self.calls += 1
        v = self.loss(width, seed, math.log2(hps["lr"]))
        return TrainResult(val_loss=math.inf if v is None else float(v), diverged=v is None, steps=10,
                           seconds=0.001)


def two_valleys(width: int, seed: int, x: float) -> float:
    """Two valleys at log2 lr -12 and -8 at every width (no drift); seed 0 finds -8 deeper by 0.02,
    seed 1 finds -12 deeper by 0.06, so their mean (the grid's optimum) sits at -12."""
    low, high = (0.02, 0.0) if seed == 0 else (0.0, 0.06)
    return 1.0 - 0.01 * math.log2(width) + min(0.05 * (x + 12) ** 2 + low, 0.05 * (x + 8) ** 2 + high)


def test_a_valley_the_lead_seed_ranks_second_is_still_decided_by_every_seed() -> None:
    kw = {"parametrizations": ["mup"], "expect": {"mup": "any"}}
    full = bowl_check(LossRunner(two_valleys, "two-valleys"), **kw)
    cheap = bowl_check(LossRunner(two_valleys, "two-valleys"), strategy="adaptive", start=2.0 ** -8, **kw)
    assert [round(o.x, 2) for o in full.results[0].optima] == [-12.0] * 4
    assert [o.x for o in cheap.results[0].optima] == [o.x for o in full.results[0].optima]


def test_after_its_survey_the_first_width_walks_on_the_lead_seed_then_completes_every_seed() -> None:
    x = np.arange(14.0)
    truth = np.stack([0.01 * (x - 5) ** 2, 0.01 * (x - 5) ** 2 + 0.1], axis=1)
    losses = np.full((14, 2), math.nan)
    rounds = []
    while True:
        idx, lead = plan_round(losses, start=0, stride=2, refine=2, survey=True)
        if not idx:
            break
        rounds.append((idx, lead))
        losses[idx, :1 if lead else 2] = truth[idx, :1 if lead else 2]
    # survey every two octaves; then one grid step at a time (not an octave bracket) from its best
    # point; then the second seed on the three points the vertex reads
    assert rounds == [([0, 4, 8, 12], True), ([3, 5], True), ([6], True), ([4, 5, 6], False)]


def test_on_a_measured_landscape_where_the_seeds_disagree_the_adaptive_optima_are_the_grids() -> None:
    # The quick ResGLU benchmark under SP (tests/check/data): at width 128 the lead seed alone
    # slopes up towards a second valley near log2 lr -7 while the seed mean slopes down to -9.35.
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "data" / "resglu_sp_quick_grid.json").read_text())
    lo, hi, step = data["log2_lr"]
    xs = [lo + k * step for k in range(round((hi - lo) / step) + 1)]
    table = {(w, s, round(2 * x)): data["losses"][i][j][s] for i, w in enumerate(data["widths"])
             for j, x in enumerate(xs) for s in data["seeds"]}

    def measured(width: int, seed: int, x: float) -> float | None:
        v = table[(width, seed, round(2 * x))]
        return None if v is None or v > 1e8 else v

    kw = {"widths": data["widths"], "grid": {"lr": [2.0 ** x for x in xs]}, "seeds": data["seeds"],
          "parametrizations": ["sp"], "expect": {"sp": "any"}}
    full = bowl_check(LossRunner(measured, "resglu-sp-quick"), **kw)
    cheap_runner = LossRunner(measured, "resglu-sp-quick")
    cheap = bowl_check(cheap_runner, strategy="adaptive", start=2.0 ** -7, **kw)
    assert [round(o.x, 2) for o in full.results[0].optima] == [-7.0, -8.01, -9.35, -10.5]
    assert [o.x for o in cheap.results[0].optima] == [o.x for o in full.results[0].optima]
    assert cheap_runner.calls < 0.5 * full.config["grid_runs"]
