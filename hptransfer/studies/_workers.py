"""Local worker processes shared by tuning and check sweeps.

A worker whose work raises an error of the user's making (an :class:`HPTransferError` such as a
factory that fails, or an exception raised in the user's own code) writes it to a report file and
exits with :data:`EXIT_REPORTED`; the parent re-raises it (:func:`raise_reported`), so a spawned
worker ends a command the way the same error does in-process: one line naming the module and the
fix, exit code 2 on the command line, instead of a traceback per worker and "worker crashed".
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import errors
from .._io import user_code_frame
from ..errors import ExitCode, HPTransferError, StorageLostError, WorkerError
from ._storage import lost_storage

__all__ = ["start_workers", "stop_workers", "raise_reported", "EXIT_REPORTED", "EXIT_INTERRUPTED", "EXIT_STORAGE_LOST",
           "interrupted_note", "discard_reports", "raise_if_storage_lost"]

# A worker process exits with the command line's codes (hptransfer.errors.ExitCode): BAD_INPUT when it
# reported an error of the user's making in its report file, STORAGE_LOST when it lost the study's
# storage, INTERRUPTED when SIGINT or SIGTERM stopped it (after recording its interrupted run).
EXIT_REPORTED = ExitCode.BAD_INPUT
EXIT_STORAGE_LOST = ExitCode.STORAGE_LOST
EXIT_INTERRUPTED = ExitCode.INTERRUPTED


#: Seconds a worker has, after its first SIGINT or SIGTERM, to record its run and exit before it ends itself.
STOP_GRACE = 30


def _ignore(signum: int, frame: Any) -> None:
    """A signal after the first: nothing to do (see :func:`_interrupt_once`)."""


def _interrupt_once(signum: int, frame: Any) -> None:
    """In a worker: the first SIGINT or SIGTERM raises KeyboardInterrupt (the run in progress is recorded
    as interrupted); later ones are ignored, so a scheduler's SIGTERM to the whole job followed by the
    parent's SIGINT does not interrupt that recording. Ignored for :data:`STOP_GRACE` seconds only: a
    training function that swallows KeyboardInterrupt would otherwise leave a worker no signal stops."""
    # A no-op handler, not SIG_IGN: a second signal already delivered when the handler changes would make
    # Python raise "OSError: Signal 15 ignored due to race condition" inside the recording (seen in CI).
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGALRM, lambda *_: os._exit(EXIT_INTERRUPTED))
    signal.alarm(STOP_GRACE)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def interrupted_note(codes: Sequence[int | None]) -> str:
    """A clause for the parent's error when some workers exited interrupted while it was not."""
    n = sum(c == EXIT_INTERRUPTED for c in codes)
    return (f"; {n} of them stopped by a SIGINT or SIGTERM sent to the worker alone (exit {EXIT_INTERRUPTED}), "
            "after recording the run in progress" if n else "")


class _Reporting:
    """The spawned process's target: runs ``target(*args)``; an error of the user's making is
    written to ``report`` (JSON: class, message, where) and the process exits with EXIT_REPORTED."""

    def __init__(self, target: Callable[..., None], report: str, stop: Any = None):
        self.target, self.report, self.stop = target, report, stop

    def __call__(self, *args: Any) -> None:
        # Without this a SIGTERM (a scheduler stopping the whole job) killed the worker at once, leaving
        # its trial RUNNING until stale recovery; now it takes Ctrl-C's path.
        signal.signal(signal.SIGTERM, _interrupt_once)
        signal.signal(signal.SIGINT, _interrupt_once)
        if self.stop is not None and self.stop.is_set():  # stopped while starting (SIGINT ignored till now)
            sys.exit(EXIT_INTERRUPTED)
        try:
            self.target(*args)
        except KeyboardInterrupt:
            sys.exit(EXIT_INTERRUPTED)  # nonzero: a worker interrupted alone must not look finished
        except StorageLostError as exc:  # one line per worker, not a traceback; the parent reports it once
            print(f"hptransfer worker: {exc}", file=sys.stderr)
            sys.exit(EXIT_STORAGE_LOST)
        except WorkerError:
            raise  # the workers' own exit codes already say what happened
        except HPTransferError as exc:
            self._write({"class": type(exc).__name__, "message": str(exc)})
        except Exception as exc:
            where = user_code_frame(exc)
            if where is None:
                raise  # a bug in hptransfer or a library: the traceback is the report
            self._write({"class": None, "message": f"your code raised {type(exc).__name__}: {exc} (at {where}). "
                                                   "Fix: correct it there; run with one worker to debug it."})

    def _write(self, record: dict[str, Any]) -> None:
        Path(self.report).write_text(json.dumps(record))
        sys.exit(EXIT_REPORTED)


def start_workers(target: Callable[..., None], args: Sequence[tuple[Any, ...]], *, fix: str) -> list[Any]:
    """Start one spawned process per ``args`` entry running ``target(*entry)``.

    Everything a worker receives must pickle (spawn sends it to a fresh interpreter); a failure
    is reported up front as an :class:`HPTransferError` whose fix is ``fix``. Each process gets a
    report file (``proc.report``) for :func:`raise_reported`.
    """
    try:
        pickle.dumps((target, list(args)))
    except Exception as exc:
        raise WorkerError(f"workers={len(args)} need picklable arguments ({type(exc).__name__}: {exc}). "
                              f"Fix: {fix}") from None
    ctx = mp.get_context("spawn")  # fork after torch's thread pools started can deadlock
    folder = tempfile.mkdtemp(prefix="hptransfer-workers-")
    stop = ctx.Event()
    procs = []
    for i, a in enumerate(args):
        report = str(Path(folder) / f"worker{i}.json")
        proc = ctx.Process(target=_Reporting(target, report, stop), args=a)
        proc.report, proc.stop = report, stop  # type: ignore[attr-defined]  # its error report; the stop flag
        procs.append(proc)
    # A worker starts with SIGINT ignored (the disposition survives the exec, and Python then keeps it):
    # a Ctrl-C or a forwarded SIGTERM while it still imports would otherwise print a traceback from
    # multiprocessing's bootstrap. It handles SIGINT from its first line of ours, and reads `stop`,
    # which stop_workers sets, for a signal it ignored.
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        for proc in procs:
            proc.start()
    finally:
        if main and before is not None:  # None: a handler set outside Python, which cannot be restored
            signal.signal(signal.SIGINT, before)
    return procs


def raise_reported(procs: Sequence[Any], *, fallback: type[HPTransferError]) -> None:
    """Re-raise, in the parent, the first error a finished worker reported (same class and message,
    naming the worker; an exception of the user's own code as ``fallback``); return when none did.
    Removes the report files."""
    found: tuple[int, dict[str, Any]] | None = None
    for i, proc in enumerate(procs):
        path = Path(getattr(proc, "report", ""))
        if found is None and proc.exitcode == EXIT_REPORTED and path.is_file():
            found = (i, json.loads(path.read_text()))
    discard_reports(procs)
    if found is None:
        return
    i, record = found
    cls = getattr(errors, record["class"] or "", None)
    if not (isinstance(cls, type) and issubclass(cls, HPTransferError)) or cls is HPTransferError:
        cls = fallback
    exc = cls.__new__(cls)  # rebuilt from its message (RecipeError and others take other arguments)
    Exception.__init__(exc, f"worker process {i}: {record['message']}")
    raise exc


def raise_if_storage_lost(procs: Sequence[Any], url: str, what: str = "worker(s)") -> None:
    """Raise one :class:`StorageLostError` for the command when a worker exited :data:`EXIT_STORAGE_LOST`
    (each has printed its own line)."""
    lost = sum(p.exitcode == EXIT_STORAGE_LOST for p in procs)
    if lost:
        discard_reports(procs)
        raise StorageLostError(f"{lost_storage(url)} in {lost} {what}; the study is kept; rerun the same command "
                               "to continue once it is back.")


def discard_reports(procs: Sequence[Any]) -> None:
    """Remove the workers' report folder (when the parent raises before :func:`raise_reported`)."""
    if procs and getattr(procs[0], "report", None):
        shutil.rmtree(Path(procs[0].report).parent, ignore_errors=True)


def stop_workers(procs: Sequence[Any], *, grace: float = 20.0) -> None:
    """After Ctrl-C (which every process in the group receives): give the workers ``grace`` seconds in
    all to record their interrupted trials, then kill those still running."""
    deadline = time.monotonic() + grace
    for proc in procs[:1]:
        stop = getattr(proc, "stop", None)
        if stop is not None:
            stop.set()  # a worker still starting (SIGINT ignored) exits as soon as it can
    try:
        for proc in procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
    finally:  # also after a second Ctrl-C during the wait: no worker is left running
        for proc in procs:
            if proc.is_alive():  # it ignores signals once it handles the first: end it
                proc.kill()
        for proc in procs:
            proc.join(timeout=5.0)
