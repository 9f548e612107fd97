"""Journal file integrity: repair a torn last record, refuse a file that is not a journal.

Optuna's journal backend appends one JSON record per line. A full disk or a power cut can
leave the last line half written (no final newline). Optuna skips such a fragment while
reading, but its next append lands right after it, joining fragment and record into one
undecodable line: from then on every start raises ``JSONDecodeError`` and the completed trials
can only be recovered by hand. :func:`check_journal` runs before a study is opened: it cuts a
torn tail back to the last newline (the old file is kept as ``<file>.bak``) and refuses a file
whose complete lines are not journal records (a user's own file, an old corruption), naming the
line and the repair.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import StorageError, warn

__all__ = ["check_journal", "JOURNAL_RECORD_START", "journal_changed", "journal_changed_message"]

#: Every record Optuna writes starts with these bytes (``json.dumps`` with compact separators,
#: ``op_code`` first); a torn fragment is a prefix of such a line.
JOURNAL_RECORD_START = b'{"op_code":'


def _looks_like_record_start(fragment: bytes) -> bool:
    n = min(len(fragment), len(JOURNAL_RECORD_START))
    return fragment[:n] == JOURNAL_RECORD_START[:n]


def _is_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


def _bad_line(path: Path, number: int, line: bytes, why: str) -> StorageError:
    shown = line[:60].decode("utf-8", "replace")
    return StorageError(
        f"tune.storage: journal file {path} line {number} is {why} ({shown!r}...). Fix: if this file is a "
        f"study journal, keep a copy, then delete or repair line {number} (every line must be one JSON record "
        "starting with {\"op_code\":); if it is not a journal, point tune.storage at a new file."
    )


def check_journal(path: Path) -> bool:
    """Check the journal file at ``path`` before Optuna opens it; return True if a torn tail was cut.

    An absent or empty file is fine. A last line without its newline that is the start of a
    journal record is cut off (a copy of the whole file goes to ``<path>.bak``; warning "dropped a
    partial last record"); a last record complete but for its newline gets the newline. Any
    complete line that is not a JSON object with an ``op_code``, or a last line that does not
    start like a journal record, raises :class:`StorageError` naming the file, the line number
    (1-based) and the repair. The caller holds the journal's lock, so a record being appended
    by a live worker is never mistaken for a torn one.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"tune.storage: cannot read journal file {path}: {exc.strerror or exc}. Fix: give a "
                           "readable file path, e.g. runs/my-study/study.journal.") from None
    if not data:
        return False
    complete, sep, tail = data.rpartition(b"\n")
    if not sep:  # no newline at all: one fragment, or a file that is not a journal
        complete, tail = b"", data
    lines = complete.split(b"\n") if sep else []
    for number, line in enumerate(lines, start=1):
        if not _is_record(line):
            raise _bad_line(path, number, line, "not a readable journal record")
    if not tail:
        return False
    if not _looks_like_record_start(tail):
        raise _bad_line(path, len(lines) + 1, tail, "not a journal record (and has no final newline)")
    if _is_record(tail):  # torn after the record, before its newline: keep the record
        with open(path, "ab") as f:
            f.write(b"\n")
        return True
    backup = path.with_name(path.name + ".bak")
    shutil.copyfile(path, backup)
    with open(path, "r+b") as f:
        f.truncate(len(complete) + len(sep))
    warn(f"journal file {path}: dropped a partial last record ({len(tail)} bytes, left by a crash or a "
                  f"full disk); the complete records are kept and the original file is saved as {backup}.")
    return True


def journal_changed(exc: BaseException) -> BaseException | None:
    """The error, in ``exc``'s chain, of Optuna's journal backend failing on a file that changed or
    failed under the running study (``None``: not that).

    Optuna's journal backend reads new records from the byte offset where it stopped. When the file is
    deleted, truncated or replaced while a study runs, that offset falls inside some other line and the
    read fails with ``JSONDecodeError`` (which Optuna 5.1's trial loop then masks with an
    ``UnboundLocalError``), or the file is gone (``FileNotFoundError``); a full disk fails the append
    (``OSError``). A torn tail at start-up is repaired before any of this (:func:`check_journal`).
    """
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, (json.JSONDecodeError, OSError)) and _through_optuna_journal(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _through_optuna_journal(exc: BaseException) -> bool:
    """Whether ``exc`` passed through Optuna's journal storage code (by module name, not file path: a
    user's folder may be called anything)."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("optuna.storages.journal"):
            return True
        tb = tb.tb_next
    return False


def journal_changed_message(path: str, cause: BaseException) -> str:
    """One line for :func:`journal_changed`'s error on the journal at ``path``."""
    if isinstance(cause, (json.JSONDecodeError, FileNotFoundError)):
        return (f"the study journal {path} changed while this process was using it (deleted, truncated or replaced "
                "by another program): what it reads back is not what it wrote, so it stopped. Fix: leave the journal "
                "alone while a study runs; restore it if you have a copy, then rerun the same command to continue "
                "from what the file holds.")
    reason = getattr(cause, "strerror", None) or cause
    return (f"the study journal {path} could not be read or written ({type(cause).__name__}: {reason}); the records "
            "written before are kept (a torn last record is repaired on the next start). Fix: free space or repair "
            "the file system, then rerun the same command to continue.")
