"""The sweep behind the check: Optuna storage, resume, crashed and retried runs, worker processes."""

from __future__ import annotations

import math

import pytest
from _helpers import LR_GRID, BowlRunner, bowl_check

from hptransfer.check import Tolerances


def test_a_crashing_run_stops_the_check_and_missing_runs_never_pass(tmp_path):
    class Flaky(BowlRunner):
        def __call__(self, parametrization, width, seed, hps):
            if width == 256 and seed == 1 and hps["lr"] == LR_GRID[5]:
                raise RuntimeError("worker died")
            return super().__call__(parametrization, width, seed, hps)

    storage = str(tmp_path / "check.journal")
    with pytest.raises(RuntimeError):  # a broken training function is a bug, not a data point
        bowl_check(runner=Flaky({"sp": -0.75, "mup": 0.0}), storage=storage)
    # What finished is kept; analysed as it stands, the hole is reported and cannot pass.
    from hptransfer.check._sweep import SweepData, SweepPlan
    from hptransfer.check._verdict import judge_sweep

    plan = SweepPlan("lr", tuple(LR_GRID), (64, 128, 256), (0, 1), ("mup",))
    full = bowl_check(parametrizations=["mup"], expect=None, widths=[64, 128, 256]).results[0].losses.copy()
    full[1, 8, 0] = math.nan
    r = judge_sweep(SweepData(plan, {"mup": full}, 0.0, 1, "s"), "mup", Tolerances())
    assert r.verdict == "fail" and r.n_missing == 1 and "missing" in r.reasons[0]


def test_journal_storage_resumes_without_rerunning(tmp_path):
    storage = str(tmp_path / "check.journal")
    first = BowlRunner({"sp": -0.75, "mup": 0.0})
    rep1 = bowl_check(runner=first, storage=storage, widths=[64, 128, 256], grid={"lr": LR_GRID[:12]})
    assert first.calls == 3 * 12 * 2 * 2
    again = BowlRunner({"sp": -0.75, "mup": 0.0})
    rep2 = bowl_check(runner=again, storage=storage, widths=[64, 128, 256], grid={"lr": LR_GRID[:12]})
    assert again.calls == 0
    assert rep1.studies == rep2.studies
    assert rep2.result("mup").drift.slope == pytest.approx(rep1.result("mup").drift.slope)


@pytest.mark.slow
def test_two_worker_processes_fill_the_grid_once(tmp_path):
    storage = str(tmp_path / "check.journal")
    rep = bowl_check(storage=storage, workers=2, widths=[64, 128, 256], grid={"lr": LR_GRID[:12]})
    for r in rep.results:
        assert r.n_missing == 0
    again = BowlRunner({"sp": -0.75, "mup": 0.0})
    bowl_check(runner=again, storage=storage, widths=[64, 128, 256], grid={"lr": LR_GRID[:12]})
    assert again.calls == 0


def test_a_run_that_raised_is_retried_on_the_next_check(tmp_path):
    class FlakyOnce(BowlRunner):
        failed = False

        def __call__(self, parametrization, width, seed, hps):
            if not FlakyOnce.failed and width == 128 and seed == 1 and hps["lr"] == LR_GRID[5]:
                FlakyOnce.failed = True
                raise RuntimeError("out of memory")
            return super().__call__(parametrization, width, seed, hps)

    storage = str(tmp_path / "check.journal")
    kw = {"parametrizations": ["mup"], "expect": None, "widths": [64, 128, 256], "storage": storage}
    with pytest.raises(RuntimeError):
        bowl_check(runner=FlakyOnce({"mup": 0.0}), **kw)
    rerun = FlakyOnce({"mup": 0.0})
    rep = bowl_check(runner=rerun, **kw)  # the FAILed grid point is queued again, not skipped forever
    assert rep.results[0].n_missing == 0 and rep.passed
    assert 1 <= rerun.calls < 3 * len(LR_GRID) * 2  # resumed: only what was not COMPLETE ran


def test_collect_counts_only_failed_points_that_are_still_missing() -> None:
    """A run that raised and was rerun is not missing; one that was never rerun is, however many
    other grid points an adaptive sweep left unplanned."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from hptransfer.check._sweep import SweepPlan, collect

    plan = SweepPlan("lr", (0.001, 0.01, 0.1), (64,), (0,), ("mup",))
    dist = {"parametrization": optuna.distributions.CategoricalDistribution(["mup"]),
            "width": optuna.distributions.CategoricalDistribution([64]),
            "seed": optuna.distributions.CategoricalDistribution([0]),
            "lr": optuna.distributions.FloatDistribution(0.001, 0.1, log=True)}
    study = optuna.create_study()

    def add(lr: float, state: TrialState) -> None:
        study.add_trial(create_trial(params={"parametrization": "mup", "width": 64, "seed": 0, "lr": lr},
                                     distributions=dist, state=state,
                                     value=1.0 if state == TrialState.COMPLETE else None,
                                     user_attrs={"diverged": False}))

    add(0.001, TrialState.FAIL)
    add(0.001, TrialState.COMPLETE)  # rerun: covered
    add(0.01, TrialState.FAIL)  # never rerun: missing
    assert collect(study, plan, "s").failed == 1  # the 0.1 point was never planned: not a failure


def test_an_interrupted_point_already_queued_is_not_queued_again() -> None:
    """recover_stale re-queues an interrupted run (a WAITING trial, whose params Optuna keeps aside until it
    runs); the failed-run pass must see that copy, or the point ran twice on the next check."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from hptransfer.check._sweep import SweepPlan, _requeue_failed

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    plan = SweepPlan("lr", (0.001, 0.01), (64,), (0,), ("mup",))
    params = {"parametrization": "mup", "width": 64, "seed": 0, "lr": 0.01}
    dist = {"parametrization": optuna.distributions.CategoricalDistribution(["mup"]),
            "width": optuna.distributions.CategoricalDistribution([64]),
            "seed": optuna.distributions.CategoricalDistribution([0]),
            "lr": optuna.distributions.FloatDistribution(0.001, 0.1, log=True)}
    study = optuna.create_study()
    study.add_trial(create_trial(params=params, distributions=dist, state=TrialState.FAIL))  # the interrupted run
    study.enqueue_trial(params)  # its copy, queued by recover_stale
    assert _requeue_failed(study, plan) == 0
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
