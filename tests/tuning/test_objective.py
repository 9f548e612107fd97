"""The tuning objective: a worker that asked after the budget was full cancels before training
(hptransfer.tuning._objective)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hptransfer.tuning import Objective, SurplusTrial, parse_space


def test_budget_race_cancels_the_late_trial_before_it_trains(tmp_path: Path) -> None:
    calls = []
    obj = Objective(space=parse_space({"lr": ("log_float", 1e-3, 1e-1)}), widths=[16], seeds=[0], steps=1,
                    train_fn=lambda hp, **kw: calls.append(hp) or 1.0, total=2)
    study = optuna.create_study()
    first, second, late = study.ask(), study.ask(), study.ask()  # three workers passed the check together
    assert obj(first) == 1.0 and obj(second) == 1.0
    with pytest.raises(SurplusTrial):
        obj(late)
    assert len(calls) == 2 and late.user_attrs["surplus"] is True
