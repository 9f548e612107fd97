"""Optuna plumbing shared by tuning and the check: storages, local worker processes, progress display.

A journal file is the embedded default; ``postgresql://`` URLs serve many machines.
"""

from __future__ import annotations

from ._logging import optuna_verbosity
from ._progress import Progress
from ._storage import (
    COUNTED_STATES,
    GRACE_INTERVALS,
    awaiting_requeue,
    connection_lost,
    count_trials,
    create_study,
    load_study,
    lost_storage,
    mark_ended,
    mark_worker,
    open_storage,
    recover_stale,
    redact_url,
    reopen_study,
    storage_guard,
    storage_url,
    where,
)
from ._workers import (
    EXIT_INTERRUPTED,
    EXIT_STORAGE_LOST,
    discard_reports,
    interrupted_note,
    raise_if_storage_lost,
    raise_reported,
    start_workers,
    stop_workers,
)

__all__ = ["storage_url", "open_storage", "create_study", "load_study", "recover_stale", "mark_worker",
           "count_trials", "COUNTED_STATES", "Progress", "start_workers", "stop_workers", "raise_reported",
           "EXIT_INTERRUPTED", "EXIT_STORAGE_LOST", "interrupted_note", "discard_reports", "lost_storage",
           "raise_if_storage_lost", "reopen_study",
           "redact_url", "optuna_verbosity", "storage_guard", "where", "connection_lost",
           "GRACE_INTERVALS", "awaiting_requeue", "mark_ended"]
