"""Journal integrity: a torn last record is repaired, a file that is not a journal is refused."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import optuna
import pytest
from _helpers import hpt_warns
from optuna.trial import TrialState

from hptransfer.errors import StorageError
from hptransfer.studies import load_study, storage_url
from hptransfer.studies._storage import create_study


def _journal_with_trials(tmp_path: Path, n: int = 3) -> tuple[str, Path]:
    path = tmp_path / "s.journal"
    url = storage_url(str(path), tmp_path)
    study = create_study(url, "s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
    return url, path


def test_tear_at_every_byte_of_the_last_record_resumes_with_every_completed_trial(tmp_path: Path) -> None:
    url, path = _journal_with_trials(tmp_path)
    whole = path.read_bytes()
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    head = whole[:last_start]
    # the trials complete before the last record was written
    before = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(_write(tmp_path / "head.journal", head)))))
    done_before = {t.number: t.value for t in before.trials if t.state == TrialState.COMPLETE}
    done_all = {t.number: t.value for t in load_study(url, "s").trials if t.state == TrialState.COMPLETE}
    assert len(done_all) == 3 and len(done_before) == 2  # the last record completes the last trial
    for cut in range(last_start + 1, len(whole)):  # every byte offset inside the last record
        _write(path, whole[:cut])
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            study = load_study(url, "s")  # repairs before Optuna reads
            study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # the append that used to corrupt
        again = load_study(url, "s")  # a second start reads the file cleanly
        kept = {t.number: t.value for t in again.trials if t.state == TrialState.COMPLETE}
        expected = done_all if cut == len(whole) - 1 else done_before  # only the newline missing: record kept
        assert {k: kept[k] for k in expected} == expected, f"cut at byte {cut}"
        for line in path.read_bytes().splitlines():
            json.loads(line)  # every line is a whole record again


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_torn_tail_is_backed_up_and_warned(tmp_path: Path) -> None:
    url, path = _journal_with_trials(tmp_path, n=1)
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])
    with hpt_warns("dropped a partial last record"):
        load_study(url, "s")
    assert (tmp_path / "s.journal.bak").read_bytes() == whole[:-7]
    assert path.read_bytes().endswith(b"\n")


@pytest.mark.parametrize("content", [b"my notes, not a journal", b"my notes\n", b'{"a": 1}\n',
                                     b'{"op_code":0}\nhello\n{"op_code":1}\n'])
def test_a_file_that_is_not_a_journal_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(StorageError, match=r"notes\.txt line \d+ .*Fix"):
        create_study(storage_url(str(path), tmp_path), "s")
    assert path.read_bytes() == content  # nothing appended


def test_corrupt_middle_line_names_the_line(tmp_path: Path) -> None:
    url, path = _journal_with_trials(tmp_path, n=1)
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(1, lines[1][:10] + lines[1])  # the old failure: a fragment with a record appended to it
    path.write_bytes(b"".join(lines))
    with pytest.raises(StorageError, match=r"line 2 is not a readable journal record"):
        load_study(url, "s")
