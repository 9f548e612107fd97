"""Tuning and checking on a real PostgreSQL server (the multi-machine storage).

`.ci/run` starts a server on loopback and sets HPT_TEST_POSTGRES_URL; without it these tests
skip (locally: start one as .ci/run does)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hptransfer.errors import StorageError
from hptransfer.studies import _storage
from hptransfer.tuning import tune

URL = os.environ.get("HPT_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="HPT_TEST_POSTGRES_URL not set (no PostgreSQL server)")


def _recipe(tmp_path: Path, study: str, trials: int) -> dict:
    return {
        "name": study, "out": str(tmp_path / "run"),
        "model": {"name": "mlp"}, "task": {"name": "classification", "kwargs": {"n_train": 512, "n_val": 256}},
        "train": {"batch_size": 32, "steps": 15},
        "widths": {"proxy": 16, "target": 64},
        "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}},
        "tune": {"trials": trials, "sampler": "random", "storage": URL, "study": study},
    }


def test_two_workers_on_postgres_lose_no_trial_and_resume(tmp_path: Path) -> None:
    study = f"pg-{uuid.uuid4().hex[:10]}"
    res = tune(_recipe(tmp_path, study, 8), workers=2, quiet=True)
    assert res.storage == URL
    trials = [t for t in _storage.load_study(URL, study).get_trials() if not t.user_attrs.get("surplus")]
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["worker_pid"] for t in trials} and res.n_failed == 0
    # a second call with a larger total continues the same study on the server
    res2 = tune(_recipe(tmp_path, study, 10), quiet=True)
    assert res2.n_complete == 10


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    bad = "postgresql://postgres@127.0.0.1:1/postgres"
    with pytest.raises(StorageError, match=r"(?s)cannot open .*127\.0\.0\.1:1/postgres.*Fix"):
        _storage.open_storage(bad)
