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
    ("postgresql+psycopg://u:p%40ss@h/db?password=x&sslmode=require",
     "postgresql+psycopg://u:***@h/db?password=***&sslmode=require"),
    ("postgresql://u@h/db?sslpassword=s3cret&sslmode=require", "postgresql://u@h/db?sslpassword=***&sslmode=require"),
    ("postgresq://u:s3cret@h/db", "postgresq://u:***@h/db"),  # a mistyped scheme: still a password
    ("postgresql://u:p@s3cret@h/db", "postgresql://u:***@h/db"),  # an unescaped "@" in the password
    ("mysql://u@h/db", "mysql://u@h/db"),  # no password: nothing to hide
    ("sqlite:////tmp/s.db", "sqlite:////tmp/s.db"),
    ("journal:///tmp/my run/a%b@c.journal", "journal:///tmp/my run/a%b@c.journal"),  # a path, not re-escaped
    ("/tmp/s.journal", "/tmp/s.journal"),
    ("inmemory", "inmemory"),
    ("postgresql://u:s3cret@h:notaport/db", "postgresql://u:***@h:notaport/db"),
    ("open 'postgresql://a:b@c/d': password=s3cret host=h", "open 'postgresql://a:***@c/d': password=*** host=h"),
    ("https://s3cret@example.com/x", "https://***@example.com/x"),  # a token as userinfo
    ("mail bob@example.com", "mail bob@example.com"),
])
def test_redact_url_hides_passwords_only(url: str, shown: str) -> None:
    from hptransfer._io import redact_url

    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_an_environment_variable_in_the_storage_url_is_expanded_or_refused(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HPT_TEST_STUDY_DB", str(tmp_path / "s.journal"))
    assert _storage.storage_url("${HPT_TEST_STUDY_DB}", ".") == "journal://" + str(tmp_path / "s.journal")
    monkeypatch.setenv("HPT_TEST_PW", "s3cret")
    assert _storage.storage_url("postgresql://u:${HPT_TEST_PW}@h/db", ".") == "postgresql://u:s3cret@h/db"
    monkeypatch.delenv("HPT_TEST_UNSET", raising=False)
    with pytest.raises(StorageError, match=r"environment variable HPT_TEST_UNSET .* not set\. Fix: export"):
        _storage.storage_url("${HPT_TEST_UNSET}", str(tmp_path))
    assert list(tmp_path.iterdir()) == [] or all("$" not in p.name for p in tmp_path.iterdir())
    assert _storage.storage_url("postgresql://u:pa$word@h/db", ".") == "postgresql://u:pa$word@h/db"  # a bare $


def test_a_mistyped_scheme_does_not_print_the_password() -> None:
    with pytest.raises(StorageError, match="unknown storage scheme") as err:
        _storage.storage_url("postgresq://user:s3cret@h/db", ".")
    assert "s3cret" not in str(err.value) and "user:***@h" in str(err.value)


def test_the_package_logger_hides_secrets_whoever_prints_it(caplog) -> None:
    from hptransfer.errors import logger

    with caplog.at_level("INFO", logger="hptransfer"):
        logger.warning("cannot reach %s", "postgresql://u:s3cret@h/db?sslpassword=k3y")
    assert "s3cret" not in caplog.text and "k3y" not in caplog.text and "u:***@h" in caplog.text
