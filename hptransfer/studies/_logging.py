"""Optuna's log level, set for a block and restored after it.

``optuna.logging.set_verbosity`` is process-wide: a library call that lowers it for its own
trials must put it back, or a notebook user's later studies go silent.

Inside the block Optuna's own report of a trial that raised (a warning with the traceback, then
"Trial N failed with value None") is left out: the exception goes on to hptransfer's caller, who
gets it once, as one line naming the user's frame on the command line or as the exception itself
in Python, instead of a traceback printed before it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import optuna

__all__ = ["optuna_verbosity"]


@contextlib.contextmanager
def optuna_verbosity(level: int) -> Iterator[None]:
    """Set Optuna's verbosity to ``level`` (a ``logging`` level, e.g. ``logging.ERROR``) inside the
    block; the previous level comes back when the block exits, normally or by an exception."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(level)
    logger, quiet = logging.getLogger("optuna.study._optimize"), _RaisedTrials()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
        optuna.logging.set_verbosity(previous)


class _RaisedTrials(logging.Filter):
    """Drops Optuna's two warnings about a trial whose objective raised (hptransfer re-raises it)."""

    _FAILED = re.compile(r"Trial (\d+) failed with (parameters|value)")

    def __init__(self) -> None:
        super().__init__()
        self.raised: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        match = self._FAILED.match(str(record.msg))
        if match is None:
            return True
        number, kind = match.groups()
        if kind == "parameters" and record.exc_info:
            self.raised.add(number)
            return False
        return not (kind == "value" and number in self.raised)
