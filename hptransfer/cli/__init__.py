"""The ``hptransfer`` command line: one module per command, collected by :func:`main`.

Exit codes: 0 success (a check passed), 1 a check failed, 2 bad input (one line on stderr
naming the option or field and the fix; no traceback), 130 interrupted.
"""

from __future__ import annotations

from ._main import COMMAND_MODULES, EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, build_parser, main

__all__ = ["main", "build_parser", "COMMAND_MODULES", "EXIT_OK", "EXIT_FAIL", "EXIT_BAD_INPUT"]
