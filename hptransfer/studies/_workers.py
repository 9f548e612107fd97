"""Local worker processes shared by tuning and check sweeps."""

from __future__ import annotations

import multiprocessing as mp
import pickle
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import WorkerError

__all__ = ["start_workers", "stop_workers"]


def start_workers(target: Callable[..., None], args: Sequence[tuple[Any, ...]], *, fix: str) -> list[Any]:
    """Start one spawned process per ``args`` entry running ``target(*entry)``.

    Everything a worker receives must pickle (spawn sends it to a fresh interpreter); a failure
    is reported up front as an :class:`HPTransferError` whose fix is ``fix``.
    """
    try:
        pickle.dumps((target, list(args)))
    except Exception as exc:
        raise WorkerError(f"workers={len(args)} need picklable arguments ({type(exc).__name__}: {exc}). "
                              f"Fix: {fix}") from None
    ctx = mp.get_context("spawn")  # fork after torch's thread pools started can deadlock
    procs = [ctx.Process(target=target, args=a) for a in args]
    for proc in procs:
        proc.start()
    return procs


def stop_workers(procs: Sequence[Any], *, grace: float = 20.0) -> None:
    """After Ctrl-C (which every process in the group receives): give each worker ``grace``
    seconds to record its interrupted trial, then terminate it."""
    for proc in procs:
        proc.join(timeout=grace)
        if proc.is_alive():
            proc.terminate()
            proc.join()
