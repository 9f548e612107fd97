"""Optuna's log level, set for a block and restored after it.

``optuna.logging.set_verbosity`` is process-wide: a library call that lowers it for its own
trials must put it back, or a notebook user's later studies go silent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import optuna

__all__ = ["optuna_verbosity"]


@contextlib.contextmanager
def optuna_verbosity(level: int) -> Iterator[None]:
    """Set Optuna's verbosity to ``level`` (a ``logging`` level, e.g. ``logging.ERROR``) inside the
    block; the previous level comes back when the block exits, normally or by an exception."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)
