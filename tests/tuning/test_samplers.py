"""Sampler hygiene: the model-based samplers never propose a point already in the study."""

from __future__ import annotations

import collections

import optuna
import pytest

from hptransfer.tuning._samplers import make_sampler


@pytest.mark.parametrize("name", ["gp", "tpe"])
def test_a_corner_optimum_is_not_proposed_again(name: str) -> None:
    # The loss falls toward the lower bound: plain GP proposed lr = 1.0 in 22 of 30 trials.
    study = optuna.create_study(sampler=make_sampler(name, seed=0, startup=5))
    with_logs = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study.optimize(lambda t: t.suggest_float("lr", 1.0, 100.0, log=True), n_trials=25)
    finally:
        optuna.logging.set_verbosity(with_logs)
    counts = collections.Counter(t.params["lr"] for t in study.trials)
    assert counts.most_common(1)[0][1] == 1, counts.most_common(3)
    if name == "gp":  # the corner was proposed again and replaced by a random point, and said so
        assert any("resampled_duplicate" in t.user_attrs for t in study.trials)


def test_queued_points_count_as_taken() -> None:
    study = optuna.create_study(sampler=make_sampler("gp", seed=0, startup=2))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=4)
    study.enqueue_trial({"x": 0.0})  # re-queued parameters of a failed trial run as given
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    assert study.trials[-1].params == {"x": 0.0}
