"""Storage recovery and clear storage errors (journal file; PostgreSQL in test_storage_postgres.py)."""

from __future__ import annotations

import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

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


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://user:s3cret@db.example:5432/hpt", "postgresql://user:***@db.example:5432/hpt"),
    ("postgresql+psycopg://u:p%40ss@h/db?password=x&sslmode=require", "postgresql+psycopg://u:***@h/db?sslmode=require"),
    ("mysql://u@h/db", "mysql://u@h/db"),  # no password: nothing to hide
    ("sqlite:////tmp/s.db", "sqlite:////tmp/s.db"),
    ("journal:///tmp/my run/a%b@c.journal", "journal:///tmp/my run/a%b@c.journal"),  # a path, not re-escaped
    ("/tmp/s.journal", "/tmp/s.journal"),
    ("inmemory", "inmemory"),
    ("postgresql://u:s3cret@h:notaport/db", "postgresql://***@h:notaport/db"),  # unparsable: cut before "@"
])
def test_redact_url_hides_passwords_only(url: str, shown: str) -> None:
    from hptransfer._io import redact_url

    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)
