"""The reporter handed to a user's training function checks divergence at every step
(hptransfer.training._user_fn)."""

from __future__ import annotations

import re

import pytest
from _helpers import hpt_warns, no_warnings

from hptransfer.errors import TrainingDiverged
from hptransfer.training import Reporter
from hptransfer.training._loop import DivergenceGuard


def test_reporter_checks_divergence_every_step() -> None:
    r = Reporter(guard=DivergenceGuard(factor=3.0))
    r(0, 2.0)
    r(1, 5.0)
    with pytest.raises(TrainingDiverged):
        r(2, 7.0)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        Reporter(guard=DivergenceGuard())(0, float("nan"))


def test_a_training_function_that_never_reports_is_warned_about() -> None:
    from hptransfer.training._user_fn import call_train_fn

    def silent(hp, *, width, report):
        return 1.0

    def no_hook(hp, *, width):
        return 1.0

    def reports(hp, *, width, report):
        report(0, 1.0)
        return 1.0

    seen: list[int] = []
    for fn, said in ((silent, "'silent' returned without calling report(step, loss)"),
                     (no_hook, "(it takes no report argument)")):
        with hpt_warns(re.escape(said) + ".*Fix: call report"):
            assert call_train_fn(fn, {}, width=8, seed=0, report=lambda step, loss: None) == 1.0
    with no_warnings():
        assert call_train_fn(reports, {}, width=8, report=lambda step, loss: seen.append(step)) == 1.0
    assert seen == [0]  # the user's calls reach the hook it was given
