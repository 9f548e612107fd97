"""Where several tune processes meet a fault: a trial failed as stale while its worker was away, and
sampler seeds of processes that start side by side on one study."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

__all__ = ["told_too_late", "own_stale_trial", "process_salt"]


def told_too_late(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna's refusal to record a result for a trial already finished elsewhere
    (``ValueError("Cannot tell a FAIL trial.")``, which Optuna's own clean-up may wrap in an AssertionError);
    matched on Optuna's text, the only mark it leaves."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ValueError) and str(seen).startswith("Cannot tell a "):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def own_stale_trial(study: optuna.Study) -> int | None:
    """The number of this process's latest trial when it is FAIL (failed by another worker), else None."""
    import os
    import socket

    host, pid = socket.gethostname(), os.getpid()
    mine = [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("worker_pid") == pid and t.user_attrs.get("worker_host") == host]
    last = max(mine, key=lambda t: t.number, default=None)
    return last.number if last is not None and last.state == TrialState.FAIL else None


def process_salt(url: str) -> int:
    """A seed offset unique to this process (host, pid, start time) on a database study, where other shells
    or jobs may start beside this one with the same recipe and the same count of trials: without it they
    would draw the same points (measured: 4 distinct of 8). 0 on a journal study (seeds reproducible)."""
    import hashlib
    import os
    import socket

    if url.startswith("journal://"):
        return 0

    key = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big")
