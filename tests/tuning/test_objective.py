"""The tuning objective: a worker that asked after the budget was full cancels before training
(hptransfer.tuning._objective)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from hptransfer.tuning import recipe_from_train_fn
from hptransfer.tuning._objective import Objective, SurplusTrial


def _objective(calls: list, total: int) -> Objective:
    """The objective of tune(fn, space={'lr': ...}, width=16, steps=1) with a study budget of ``total``."""
    fn = lambda hp, **kw: calls.append(hp) or 1.0  # noqa: E731
    rec = recipe_from_train_fn(fn, space={"lr": ("log_float", 1e-3, 1e-1)}, width=16, steps=1, batch_size=None,
                               seeds=(0,), study_name="obj")
    return Objective(rec, total=total)


def test_budget_race_cancels_the_late_trial_before_it_trains(tmp_path: Path) -> None:
    calls: list = []
    obj = _objective(calls, total=2)
    study = optuna.create_study()
    first, second, late = study.ask(), study.ask(), study.ask()  # three workers passed the check together
    assert obj(first) == 1.0 and obj(second) == 1.0
    with pytest.raises(SurplusTrial):
        obj(late)
    assert len(calls) == 2 and late.user_attrs["surplus"] is True


def test_a_stale_trial_keeps_its_place_until_its_copy_is_queued() -> None:
    """Failing a silent worker's trial and queueing its copy are two writes. A fresh trial started
    between them is the surplus one; the copy, queued next, runs (the retry is not lost)."""
    import datetime
    import warnings

    from hptransfer.studies._storage import awaiting_requeue, count_trials

    calls: list = []
    obj = _objective(calls, total=2)
    study = optuna.create_study()
    assert obj(study.ask()) == 1.0
    stale = study.ask()  # its worker froze mid-training: it recorded itself and drew its values, then went silent
    stale.set_user_attr("worker_pid", 1)
    stale.suggest_float("lr", 1e-3, 1e-1, log=True)
    study.tell(stale, state=optuna.trial.TrialState.FAIL)  # heartbeat: stale
    frozen = study.trials[stale.number]
    assert awaiting_requeue(study.trials) == {stale.number} and count_trials(study) == 2
    for off in (datetime.timedelta(minutes=2), datetime.timedelta(hours=-2)):  # long ago; another time zone
        assert awaiting_requeue(study.trials, now=frozen.datetime_complete + off) == set()
    fresh = study.ask()  # another worker counted the budget in between
    with pytest.raises(SurplusTrial):
        obj(fresh)
    study.tell(fresh, state=optuna.trial.TrialState.FAIL)
    retry_cb = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry_cb(max_retry=1)(study, frozen)  # the copy
    assert awaiting_requeue(study.trials) == set() and count_trials(study) == 1
    retry = study.ask()
    assert study.trials[retry.number].system_attrs["failed_trial"] == stale.number
    assert obj(retry) == 1.0 and calls[-1] == frozen.params
    # A trial whose objective raised failed in its own right: nobody waits for a copy of it.
    def broken(hp: dict, **kw: object) -> float:
        raise ValueError("user code")

    broken_obj = Objective(dataclasses.replace(obj.recipe, task=dataclasses.replace(obj.recipe.task, train_fn=broken)))
    study.optimize(broken_obj, n_trials=1, catch=(ValueError,))
    assert study.trials[-1].state == optuna.trial.TrialState.FAIL and study.trials[-1].params
    assert awaiting_requeue(study.trials) == set()
