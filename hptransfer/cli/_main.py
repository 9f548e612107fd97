"""The ``hptransfer`` command line.

Each command lives in its own module exposing ``NAME``, ``HELP``, ``add_parser(subparsers)``
and ``run(args) -> int``; this file only collects them. To add a command, write the module
and list it in :data:`COMMAND_MODULES`.

Exit codes: 0 success (a check passed), 1 a check failed, 2 bad input (one line on stderr
naming the option or field and the fix; no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ..errors import HPTransferError

__all__ = ["main", "build_parser", "COMMAND_MODULES", "EXIT_OK", "EXIT_FAIL", "EXIT_BAD_INPUT"]

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2

#: Modules implementing one subcommand each (imported lazily by :func:`build_parser`).
COMMAND_MODULES: tuple[str, ...] = ("hptransfer.cli._coord", "hptransfer.cli._check", "hptransfer.cli._schema",
                                    "hptransfer.cli._tune", "hptransfer.cli._transfer", "hptransfer.cli._run")


class _UsageError(Exception):
    """Raised by :class:`_Parser` instead of exiting, so that ``main`` can return 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports a usage error as one line and does not exit."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command module."""
    parser = _Parser(prog="hptransfer", description="μP hyperparameter transfer for PyTorch.")
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"hptransfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        cmd = module.add_parser(sub)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except SystemExit as exc:  # --help / --version exit 0 from inside argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args._run(args))
    except HPTransferError as exc:
        # Every deliberate error names the option/field and the fix; a traceback adds nothing.
        first, *rest = str(exc).splitlines() or [type(exc).__name__]
        print(f"hptransfer {args.command}: error: {first}", file=sys.stderr)
        for line in rest:
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        where = _user_frame(exc)
        if where is None:
            raise  # a bug in hptransfer or torch: the traceback is the report
        # The user's factory, train_fn or forward raised: that is bad input (2), not a failed check (1).
        print(f"hptransfer {args.command}: error: your code raised {type(exc).__name__}: {exc} (at {where}). "
              "Fix: correct it there; run the factory or train_fn directly to debug it.", file=sys.stderr)
        return EXIT_BAD_INPUT


def _user_frame(exc: BaseException) -> str | None:
    """``file:line in function`` of the innermost traceback frame outside hptransfer, torch,
    transformers and the standard library; ``None`` when every frame is ours or a library's."""
    import torch  # already loaded by whatever raised

    ours = (Path(__file__).resolve().parents[1], Path(torch.__file__).resolve().parent,
            Path(os.__file__).resolve().parent)
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename).resolve()
        if not any(path.is_relative_to(root) for root in ours) and "site-packages" not in path.parts:
            found = f"{frame.filename}:{frame.lineno} in {frame.name}"
    return found


if __name__ == "__main__":
    sys.exit(main())
