"""Storage recovery and atomic writes (journal file; PostgreSQL in test_storage_postgres.py)."""

from __future__ import annotations

import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hptransfer._io import write_text_atomic
from hptransfer.errors import StorageError
from hptransfer.studies import _storage


def _study(tmp_path: Path) -> optuna.Study:
    url = _storage.storage_url(str(tmp_path / "s.journal"), tmp_path)
    return _storage.create_study(url, "s")


def test_young_running_trial_without_worker_record_is_left_alone(tmp_path: Path) -> None:
    study = _study(tmp_path)
    live = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # a worker still sampling
    assert _storage.recover_stale(study) == []
    assert study.trials[live.number].state == TrialState.RUNNING
    # the same trial, past the grace period with no record, is stale
    assert _storage.recover_stale(study, grace=datetime.timedelta(0)) == [live.number]
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # failed and its params re-queued


def test_journal_path_that_is_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    with pytest.raises(StorageError, match=r"cannot open journal file .*runs.*Fix"):
        _storage.open_storage("journal://" + str(tmp_path / "runs"))


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "target.yaml"
    write_text_atomic(path, "a: 1\n")
    write_text_atomic(path, "a: 2\n")
    assert path.read_text() == "a: 2\n"
    assert [p.name for p in path.parent.iterdir()] == ["target.yaml"]
