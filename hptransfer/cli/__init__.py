"""The ``hptransfer`` command line: one module per command, collected by :func:`main`.

Exit codes: :class:`hptransfer.errors.ExitCode` (docs/cli.md has the table).
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
