"""Study storage: URL -> Optuna storage, study creation, and recovery of dead workers' trials.

Shared by ``tune`` and ``check``. The default is Optuna's journal file backend: operations
are appended as JSON lines under a file lock, so several local processes write one study with
no lost trials (SQLite crashed 7 of 8 fresh workers in our measurement, see shared/OPTUNA.md).
Several machines use PostgreSQL (``postgresql://...``) through ``RDBStorage``.

The journal backend has no heartbeats: a trial whose process was killed stays RUNNING
forever. Every trial records ``worker_host`` and ``worker_pid``; :func:`recover_stale` fails
RUNNING trials whose process on this host is gone (and those interrupted by Ctrl-C) and
re-queues their parameters exactly once.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import optuna.storages.journal
from optuna.trial import TrialState

from .._io import redact, redact_url
from ..errors import HPTransferError, StorageError, StorageLostError
from ._journal import check_journal, journal_changed, journal_changed_message
from ._reconnect import RECONNECT_SECONDS, retrying
from ._url import expand_env, storage_url

__all__ = ["storage_url", "open_storage", "create_study", "load_study", "recover_stale", "mark_worker",
           "count_trials", "COUNTED_STATES", "awaiting_requeue", "mark_ended",
           "redact_url", "expand_env", "storage_guard", "where", "connection_lost", "lost_storage",
           "reopen_study"]

#: Trial states that count toward a study's trial budget (failed trials are re-queued instead).
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)

#: A RUNNING trial without a worker record younger than this may be a live worker whose
#: sampler is still choosing values: :func:`recover_stale` leaves it alone.
NO_RECORD_GRACE = datetime.timedelta(minutes=10)


#: A trial whose heartbeat is older than this many heartbeat intervals is stale (its worker is gone).
GRACE_INTERVALS = 4


def open_storage(url: str, heartbeat: int = 0,
                 reconnect: float = RECONNECT_SECONDS) -> optuna.storages.BaseStorage:
    """Open the storage behind a URL from :func:`storage_url`.

    ``heartbeat`` (seconds, database storages only; 0: off): every running trial records a heartbeat
    this often; a trial silent for :data:`GRACE_INTERVALS` x ``heartbeat`` (its worker was killed or
    froze, on any host) is failed by the next trial start in any worker and its parameters are
    re-queued once (Optuna's ``RetryFailedTrialCallback(max_retry=1)``). The journal file has no
    heartbeats: :func:`recover_stale` covers it on the same host. ``reconnect`` (seconds, database storages;
    0: off): how long a call that lost its connection is retried (``_reconnect``).
    """
    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"tune.storage: cannot create folder {path.parent}: {exc.strerror}.") from None
        if path.is_dir():
            raise StorageError(f"tune.storage: cannot open journal file {path}: it is a folder. Fix: give a file "
                               "path, e.g. runs/my-study/study.journal.")
        lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))
        try:  # under the journal's lock: a record a live worker is appending is not a torn one
            lock.acquire()
        except OSError as exc:
            raise StorageError(f"tune.storage: cannot lock journal file {path}: {exc.strerror or exc}. Fix: give a "
                               "path in a writable folder.") from None
        try:
            check_journal(path)
        finally:
            lock.release()
        try:  # the backend opens the file, the storage reads it: both fail on a folder or no permission
            backend = optuna.storages.journal.JournalFileBackend(str(path))
            return optuna.storages.JournalStorage(backend)
        except OSError as exc:
            raise StorageError(
                f"tune.storage: cannot open journal file {path}: {exc.strerror or exc}. Fix: give a writable file "
                "path (not a folder), e.g. runs/my-study/study.journal."
            ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
            kwargs: dict[str, Any] = {}
            if heartbeat > 0:
                retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
                    optuna.storages.RetryFailedTrialCallback  # the name before Optuna 4.9
                kwargs = {"heartbeat_interval": int(heartbeat), "grace_period": GRACE_INTERVALS * int(heartbeat),
                          "heartbeat_stale_trial_callback": retry(max_retry=1)}
            storage = optuna.storages.RDBStorage(url, engine_kwargs=_session_options(url, heartbeat), **kwargs)
            return retrying(storage, where(url), reconnect) if reconnect > 0 else storage
    except Exception as exc:  # driver missing, server down, bad URL: all user-fixable
        raise StorageError(redact(
            f"tune.storage: cannot open {url!r}: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}. Fix: check the URL and "
            "that the database server is reachable (pip install hptransfer[postgres] for the driver)."
        )) from None


def _session_options(url: str, heartbeat: int) -> dict[str, Any]:
    """PostgreSQL: the server ends a session left inside a transaction for longer than the stale grace.

    A worker frozen or cut off mid-write (between Optuna's ``SELECT ... FOR UPDATE`` and its commit)
    keeps its row locks for as long as its connection lives: hours, until TCP keepalive gives up.
    Every live worker that then fails its stale trial, or creates a trial, waits on that lock
    (seen: the other workers hung for good when one froze inside ``tell``). Optuna's transactions
    last milliseconds, so ``idle_in_transaction_session_timeout`` at the grace (at least 60 s)
    only ever ends a dead worker's session; its locks go with it. Options in the URL are left alone.
    """
    if url.split("://", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres"):
        return {}
    from sqlalchemy.engine import make_url

    ping = {"pool_pre_ping": True}  # a pooled connection a server restart broke is replaced, not reused
    if "options" in make_url(url).query:
        return ping
    ms = 1000 * max(60, GRACE_INTERVALS * heartbeat)
    return {**ping, "connect_args": {"options": f"-c idle_in_transaction_session_timeout={ms}"}}


def create_study(
    url: str,
    name: str,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    attrs: dict[str, Any] | None = None,
    reconnect: float = RECONNECT_SECONDS,
) -> optuna.Study:
    """Create the study (or load it if it exists) once, in the parent process, before workers start.

    ``attrs`` are stored as study user attributes on creation (recipe hash, version); on load
    they are left as they are, so a resumed study keeps its provenance. ``reconnect``: see :func:`open_storage`.
    """
    storage = open_storage(url, reconnect=reconnect)
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    if attrs and not study.user_attrs:
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    return study


def load_study(
    url: str,
    name: str,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    heartbeat: int = 0,
    reconnect: float = RECONNECT_SECONDS,
) -> optuna.Study:
    """Load an existing study; raise :class:`StorageError` naming the study and storage if absent.

    ``heartbeat``, ``reconnect``: see :func:`open_storage` (for a process that runs trials on a database)."""
    storage = open_storage(url, heartbeat, reconnect)
    try:
        return optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise StorageError(
            f"no study named {name!r} in {redact_url(url)}. Known studies: {', '.join(names) or '(none)'}. Fix: run "
            "`hptransfer tune` first, or pass the right tune.study / tune.storage."
        ) from None


def reopen_study(url: str, name: str, **kwargs: Any) -> optuna.Study:
    """:func:`load_study` for a worker of a study its command has just opened or created: a storage
    that cannot be opened now went away since (a :class:`StorageLostError`, exit 3), not a bad URL."""
    try:
        return load_study(url, name, **kwargs)
    except StorageLostError:
        raise
    except StorageError as exc:
        raise StorageLostError(f"{lost_storage(url)} before this worker could start ({exc}); the study is kept; "
                               "rerun the same command to continue once it is back.") from None


def mark_worker(trial: optuna.trial.Trial) -> None:
    """Record which process runs ``trial`` so a later start can tell whether it is still alive."""
    trial.set_user_attr("worker_host", socket.gethostname())
    trial.set_user_attr("worker_pid", os.getpid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def recover_stale(
    study: optuna.Study, *, force: bool = False, grace: datetime.timedelta | None = None
) -> list[int]:
    """Fail RUNNING trials whose worker is gone and re-queue their parameters; return their numbers.

    A RUNNING trial is stale when it was started on this host by a process that no longer
    exists, or carries no worker record although it started more than ``grace`` (default
    :data:`NO_RECORD_GRACE`) ago (a live worker records itself right after the sampler has chosen the trial's values,
    which can take seconds; younger unrecorded trials are left alone), or ``force``. Trials
    running on other hosts are left alone: only they know whether they are alive. FAIL trials
    marked ``interrupted`` (Ctrl-C) are re-queued as well. Each failed trial is re-queued at
    most once.
    """
    host = socket.gethostname()
    now = datetime.datetime.now()
    grace = NO_RECORD_GRACE if grace is None else grace
    trials = study.get_trials(deepcopy=False)
    requeued = {t.user_attrs.get("requeued_from") for t in trials}
    recovered = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            pid = t.user_attrs.get("worker_pid")
            mine = t.user_attrs.get("worker_host", host) == host
            unrecorded_long = pid is None and (t.datetime_start is None or now - t.datetime_start > grace)
            if not (force or unrecorded_long or (pid is not None and mine and not _alive(int(pid)))):
                continue
            try:
                study.tell(t.number, state=TrialState.FAIL)
            except (ValueError, RuntimeError):  # finished meanwhile
                continue
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("interrupted")):
            continue
        if t.number in requeued or not t.params:
            continue
        study.enqueue_trial(dict(t.params), user_attrs={"requeued_from": t.number})
        recovered.append(t.number)
    return recovered


def count_trials(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> int:
    """Trials in ``states``; by default those that count toward the budget: complete, pruned and
    running, and failed ones whose re-queued copy is about to appear (:func:`awaiting_requeue`)."""
    if states is not None:
        return len(study.get_trials(deepcopy=False, states=states))
    trials = study.get_trials(deepcopy=False)
    return sum(t.state in COUNTED_STATES for t in trials) + len(awaiting_requeue(trials))


#: How long a trial failed for its silent worker keeps its place in the budget while the
#: failing process queues its copy (normally milliseconds; bounded if that process dies meanwhile).
REQUEUE_HOLD = datetime.timedelta(seconds=60)


def mark_ended(trial: optuna.trial.Trial) -> None:
    """Record that the objective returned or raised in its worker (not killed or frozen mid-trial)."""
    with contextlib.suppress(Exception):  # a lost database is reported by whatever raised first
        trial.set_user_attr("ended", True)


def awaiting_requeue(trials: list[optuna.trial.FrozenTrial],
                     now: datetime.datetime | None = None) -> set[int]:
    """Numbers of FAIL trials whose worker went silent mid-trial and whose copy is not queued yet.

    Failing a stale trial and queueing its copy are two writes (Optuna's ``fail_stale_trials``,
    our :func:`recover_stale`). A worker that counted the budget between them saw a free place
    and started a fresh trial, and the copy then came too late and was cancelled as surplus
    (seen about 1 run in 3 when two workers wake on the same heartbeat). Such a trial therefore
    keeps its place until the copy exists. It is one the objective never finished (no ``ended``
    mark), that a worker had started (``worker_pid``), with parameters, that is not itself a
    retry (retries are not retried again), and that failed less than :data:`REQUEUE_HOLD` ago.
    Optuna stamps ``datetime_complete`` with the failing host's local clock, so a host in another
    time zone is hours off either way: such a trial is not held (the race is then as before).
    """
    now = datetime.datetime.now() if now is None else now
    copied = {t.system_attrs.get("failed_trial") for t in trials} | {t.user_attrs.get("requeued_from") for t in trials}
    return {t.number for t in trials
            if t.state == TrialState.FAIL and t.params and "worker_pid" in t.user_attrs
            and not t.user_attrs.get("ended") and not t.user_attrs.get("surplus")
            and "failed_trial" not in t.system_attrs and t.number not in copied
            and t.datetime_complete is not None and abs(now - t.datetime_complete) < REQUEUE_HOLD}


def where(url: str) -> str:
    """``host:port/database`` of a database URL (no user, no password); a journal's file path."""
    if url.startswith("journal://") or "://" not in url:
        return url.replace("journal://", "")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return redact_url(url)
    return f"{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"


def lost_storage(url: str) -> str:
    """``"lost the connection to host:port/db"``, or for a journal ``"lost the study journal PATH"``."""
    if url.startswith("journal://") or "://" not in url:
        return f"lost the study journal {where(url)}"
    return f"lost the connection to {where(url)}"


def connection_lost(exc: BaseException) -> BaseException | None:
    """Whether ``exc`` (or what it wraps) is a dropped database connection rather than bad data.

    Optuna's RDB storage re-raises every SQLAlchemy error as ``StorageInternalError`` with the
    misleading text "invalid data ... exceeding max length"; the cause tells the truth. Returns
    the connection error found in the chain (``None``: not a lost connection).
    """
    from sqlalchemy import exc as sa

    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError)):
            return seen
        if isinstance(seen, sa.DBAPIError) and seen.connection_invalidated:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def storage_guard(url: str) -> Iterator[None]:
    """Turn a lost database connection inside the block into one :class:`StorageLostError` line.

    ``"lost the connection to host:port/db; the study is kept; rerun to continue"`` (exit 3 in the
    command line). For a journal storage: a journal file that changed under the running study
    (deleted, truncated, replaced) is reported the same way, with exit 3; other errors pass.
    """
    if url.startswith("journal://") or "://" not in url:
        try:
            yield
        except Exception as exc:
            changed = None if isinstance(exc, HPTransferError) else journal_changed(exc)
            if changed is None:
                raise
            raise StorageLostError(journal_changed_message(where(url), changed)) from None
        return
    _quiet_heartbeat_threads()
    try:
        yield
    except HPTransferError:
        raise  # already says what failed (a server that refuses the first connection: "cannot open ...")
    except Exception as exc:
        cause = connection_lost(exc)
        if cause is None:
            raise
        raise StorageLostError(f"lost the connection to {where(url)} ({type(cause).__name__}); the study is kept; "
                               "rerun the same command to continue once the database server is back.") from None


def _quiet_heartbeat_threads() -> None:
    """Optuna's heartbeat thread also loses the connection and would print its own traceback
    ("Exception in thread ... _record_heartbeat"); the main thread reports the loss once, so a
    lost connection raised in any other thread is not printed. Other thread errors still are."""
    previous = threading.excepthook
    if getattr(previous, "_hptransfer", False):
        return

    def hook(args: Any) -> None:
        if args.exc_value is not None and connection_lost(args.exc_value) is not None:
            return
        previous(args)

    hook._hptransfer = True  # type: ignore[attr-defined]
    threading.excepthook = hook
