"""The ``hptransfer`` command line.

Each command lives in its own module exposing ``NAME``, ``HELP``, ``add_parser(subparsers)``
and ``execute(args) -> int``; this file only collects them, installs the log handler and turns errors
into exit codes (:class:`hptransfer.errors.ExitCode`, the one table; docs/cli.md shows it). To add a
command, write the module and list it in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import NoReturn

from .._io import redact, user_code_frame
from ..errors import ExitCode, HPTransferError, exit_code, logger

__all__ = ["main", "build_parser", "COMMAND_MODULES", "check_output_paths"]

#: Modules implementing one subcommand each (imported lazily by :func:`build_parser`).
COMMAND_MODULES: tuple[str, ...] = ("hptransfer.cli._coord", "hptransfer.cli._check", "hptransfer.cli._schema",
                                    "hptransfer.cli._tune", "hptransfer.cli._transfer", "hptransfer.cli._run",
                                    "hptransfer.cli._worker", "hptransfer.cli._train")


def check_output_paths(**options: str | None) -> None:
    """Refuse up front (before any training) an output file option whose folder does not exist or
    that names a folder: ``check_output_paths(plot=args.plot, json=args.json)``. No folder is
    created for such a file, so a typo cannot make folders elsewhere (``--plot /nonexistent/x.png``)."""
    from pathlib import Path

    from ..errors import OutputPathError

    for name, value in options.items():
        if not value:
            continue
        path, flag = Path(value), "--" + name.replace("_", "-")
        if path.is_dir():
            raise OutputPathError(f"{flag} {value} is a folder. Fix: name a file in it, e.g. {path / 'out'}.")
        if not path.parent.is_dir():
            raise OutputPathError(f"{flag} {value}: folder {path.parent} does not exist. Fix: create it first, or "
                                  "give a path in an existing folder.")


class _UsageError(Exception):
    """Raised by :class:`_Parser` instead of exiting, so that ``main`` can return 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports a usage error as one line and does not exit."""

    def error(self, message: str) -> NoReturn:
        # argparse quotes the offending arguments: a --storage URL given to a command without it included
        raise _UsageError(redact(f"{self.prog}: error: {message} (see '{self.prog} --help')"))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command module."""
    parser = _Parser(prog="hptransfer", description="μP hyperparameter transfer for PyTorch.")
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"hptransfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        cmd = module.add_parser(sub)
        cmd.set_defaults(_run=module.execute)
    return parser


class _LineFormatter(logging.Formatter):
    """Status lines as they are; warnings and errors as ``hptransfer <command>: warning: ...``."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()  # already redacted by the logger's filter (hptransfer._io)
        if record.levelno >= logging.WARNING:
            return f"hptransfer {self.command}: {record.levelname.lower()}: {msg}"
        return msg


@contextlib.contextmanager
def _log_to_stderr(command: str, quiet: bool, verbose: bool) -> Iterator[None]:
    """The ``hptransfer`` logger on stderr for one command: status lines (INFO) unless ``-q``, debug lines
    with ``-v``, warnings always, each on one line. Removed afterwards (``main`` can be called again)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter(command))
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    before = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # one line per record: not again through a root handler the caller set up
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's preemption, ``kill``) stops the command as Ctrl-C does: the running trial is
    marked interrupted and re-queued, workers are stopped, and the command exits 130 saying how to go on,
    instead of dying between two journal records with a trial left RUNNING."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum: int, frame: object) -> None:
        # Ctrl-C reaches every process of the group; a SIGTERM sent to this one alone is passed on to its
        # worker processes as the SIGINT they handle (each records its interrupted trial and stops).
        import multiprocessing

        for child in multiprocessing.active_children():
            with contextlib.suppress(OSError, TypeError):
                os.kill(child.pid, signal.SIGINT)  # type: ignore[arg-type]
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler set outside Python, which cannot be restored from here
            signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return ExitCode.BAD_INPUT
    except SystemExit as exc:  # --help / --version exit 0 from inside argparse
        return exc.code if isinstance(exc.code, int) else ExitCode.OK
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        with _log_to_stderr(args.command, getattr(args, "quiet", False), getattr(args, "verbose", False)), \
                _sigterm_as_interrupt():
            return int(args._run(args))
    except KeyboardInterrupt:  # tune, run and worker say more themselves; here for check, coord-check, train...
        print(f"\nhptransfer {args.command}: interrupted; what was finished is kept (studies, files written "
              "atomically). Run the same command to continue.", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except HPTransferError as exc:
        # Every deliberate error names the option/field and the fix; a traceback adds nothing.
        first, *rest = redact(str(exc)).splitlines() or [type(exc).__name__]
        print(f"hptransfer {args.command}: error: {first}", file=sys.stderr)
        for line in rest:
            print(line, file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:  # an output path we cannot write: a read-only folder, a file where a folder goes
        where = exc.filename or "a file"
        print(f"hptransfer {args.command}: error: cannot write {where}: {exc.strerror or exc}. Fix: give a path in "
              "an existing, writable folder (--out, --json, --junit-xml, --plot).", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except Exception as exc:
        cause = _database_lost(exc)
        if cause is not None:
            print(f"hptransfer {args.command}: error: lost the connection to the study's database "
                  f"({type(cause).__name__}); the study is kept; rerun the same command to continue once the "
                  "database server is back.", file=sys.stderr)
            return ExitCode.STORAGE_LOST
        where = user_code_frame(exc)
        if where is None:
            raise  # a bug in hptransfer or torch: the traceback is the report
        # The user's factory, train_fn or forward raised: that is bad input (2), not a failed check (1).
        print(redact(f"hptransfer {args.command}: error: your code raised {type(exc).__name__}: {exc} (at {where}). "
                     "Fix: correct it there; run the factory or train_fn directly to debug it."), file=sys.stderr)
        return ExitCode.BAD_INPUT


def _database_lost(exc: BaseException) -> BaseException | None:
    """A dropped database connection that escaped the storage guard (check, transfer)."""
    if "sqlalchemy" not in sys.modules:  # no database was ever opened in this process
        return None
    from ..studies._storage import connection_lost

    return connection_lost(exc)


if __name__ == "__main__":
    sys.exit(main())
