"""The reporter handed to a user's training function checks divergence at every step
(hptransfer.training._user_fn)."""

from __future__ import annotations

import pytest

from hptransfer.errors import TrainingDiverged
from hptransfer.training import DivergenceGuard, Reporter


def test_reporter_checks_divergence_every_step() -> None:
    r = Reporter(guard=DivergenceGuard(factor=3.0))
    r(0, 2.0)
    r(1, 5.0)
    with pytest.raises(TrainingDiverged):
        r(2, 7.0)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        Reporter(guard=DivergenceGuard())(0, float("nan"))
