"""How hptransfer reports what goes wrong: the errors, the exit codes, and the ``hptransfer`` logger.

* Every error hptransfer raises on purpose derives from :class:`HPTransferError`. Each message names
  the thing that is wrong (parameter, module, recipe field path or width) and the fix, so that a CLI
  can print it without a traceback.
* :class:`ExitCode` is the one table of the command line's exit codes; :func:`exit_code` maps an
  error to its code.
* Status lines (INFO) and warnings (WARNING) go to ``logging.getLogger("hptransfer")``. The command
  line installs the handler (``-q``: warnings only, ``-v``: debug); in Python, warnings reach stderr
  through logging's last-resort handler until the application configures logging. :func:`warn`
  logs each distinct warning once per process.
"""

from __future__ import annotations

import enum
import logging

__all__ = [
    "logger",
    "warn",
    "info",
    "ExitCode",
    "exit_code",
    "HPTransferError",
    "HPTransferWarning",
    "FactoryError",
    "ShapeInferenceError",
    "DepthInferenceError",
    "ParametrizationError",
    "OptimizerConfigError",
    "RecipeError",
    "StorageError",
    "StorageLostError",
    "TrainingDiverged",
    "DataError",
    "CoordCheckError",
    "CheckError",
    "TuneError",
    "TransferError",
    "TrainingError",
    "WorkerError",
    "OutputPathError",
]


#: The package's logger; see the module docstring.
logger = logging.getLogger("hptransfer")  # hptransfer._io adds the filter that hides secrets in its records

_warned: set[str] = set()

#: The latest warnings that say μP transfer will not hold (``warn(..., breaks_transfer=True)``), kept even when
#: the once-per-process rule does not show them again: the coordinate check fails on those raised while it builds.
BREAKING: list[str] = []


def warn(message: str, *, key: str | None = None, breaks_transfer: bool = False) -> None:
    """Log ``message`` as a warning of hptransfer, once per process: the same text (or the same ``key``,
    for a warning whose text differs by width) again is dropped, as Python's default warning filter
    does, so a warning found by two stages of one job, or at every width of a sweep, shows once.
    ``breaks_transfer``: the warning says transfer will not hold (also recorded in :data:`BREAKING`)."""
    if breaks_transfer:
        BREAKING.append(message)
        del BREAKING[:-100]
    seen = key if key is not None else message
    if seen in _warned:
        return
    _warned.add(seen)
    logger.warning(message)


def info(message: str) -> None:
    """A status line (INFO): what a long job is doing. The command line shows it unless ``-q``."""
    logger.info(message)


class ExitCode(enum.IntEnum):
    """The exit codes of every ``hptransfer`` command (docs/cli.md has the same table).

    None comes with a traceback: stderr holds one line (plus, for a recipe, one line per problem).
    """

    #: success (a check passed)
    OK = 0
    #: a check failed, or its verdict is inconclusive (the reason is printed)
    FAIL = 1
    #: bad input: recipe, option, model factory, file path (one line naming it and the fix)
    BAD_INPUT = 2
    #: the study's storage was lost (database connection dropped, journal file changed under it);
    #: the study is kept, rerun the same command to continue
    STORAGE_LOST = 3
    #: a worker process crashed (killed, out of memory) or was interrupted alone; rerun to continue
    WORKER_CRASHED = 4
    #: interrupted (Ctrl-C or SIGTERM); the study is consistent, rerun to continue
    INTERRUPTED = 130


def exit_code(exc: BaseException) -> ExitCode:
    """The exit code for an error that ends a command."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, StorageLostError):
        return ExitCode.STORAGE_LOST
    if isinstance(exc, WorkerError):
        return ExitCode.WORKER_CRASHED
    return ExitCode.BAD_INPUT


class HPTransferWarning(UserWarning):
    """No longer issued: hptransfer's warnings are records of the ``hptransfer`` logger (:func:`warn`).
    Kept so that warning filters written for earlier versions still import."""


class HPTransferError(Exception):
    """Root of all errors raised by hptransfer for bad input or an impossible request."""


class FactoryError(HPTransferError):
    """The user's model factory raised, or returned something that is not an ``nn.Module``,
    at one of the widths hptransfer needs (target, base or the shape-probe width)."""


class ShapeInferenceError(HPTransferError):
    """Parameter roles cannot be inferred from the shapes at two widths: nothing scales,
    names differ between widths, a parameter has more than two width dimensions, or the
    readout is ambiguous."""


class DepthInferenceError(ShapeInferenceError):
    """The depth axis cannot be found: no module list's length follows the factory's depth
    argument, or a block of the stack adds to its residual stream something that is not the
    output of a submodule (so no branch can be scaled without editing the source)."""


class ParametrizationError(HPTransferError):
    """A parametrization was misused: unknown name, a model that was already rewritten with
    different settings, a missing scaling table, or an option that does not apply."""


class OptimizerConfigError(HPTransferError):
    """Optimizer groups cannot be built: unknown optimizer family, bad learning rate or
    weight-decay mode, or a model without a scaling table."""


class RecipeError(HPTransferError):
    """A recipe (YAML or dict) is invalid. ``problems`` lists every ``(field_path, message)``."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"{len(self.problems)} problem(s){where}:"]
        lines += [f"  - {path}: {msg}" for path, msg in self.problems]
        super().__init__("\n".join(lines))


class StorageError(HPTransferError):
    """A study storage URL cannot be opened or is used in a way that would lose trials."""


class StorageLostError(StorageError):
    """The connection to the study's database dropped while a study was running (server stopped,
    network gone). Nothing finished is lost: the study is kept; rerun the same command to continue.
    The command line exits 3 for it."""


class TrainingDiverged(HPTransferError):
    """A training run produced a non-finite loss or a loss far above its starting value.

    Raised by the training loop; the tuner and the checker catch it and record the run as
    diverged instead of crashing."""

    def __init__(self, step: int, loss: float, reason: str):
        self.step = step
        self.loss = loss
        self.reason = reason
        super().__init__(f"training diverged at step {step}: {reason} (loss={loss!r})")


class DataError(HPTransferError):
    """A built-in task cannot build or serve its data: a source file it reads (for example a
    standard-library module used by the byte-level LM task) is missing, a task argument is
    out of range, an unknown split or task name is requested, or a batch request is invalid
    (negative step, non-positive batch size)."""


class CoordCheckError(HPTransferError):
    """A coordinate check was asked for with bad input: fewer than two distinct widths,
    ``steps < 1``, no seeds, a non-positive tolerance, an unsupported optimizer, or no data
    source (neither a task nor ``batch_fn``/``loss_fn``)."""


class CheckError(HPTransferError):
    """A transfer check was asked for with bad input: fewer than 3 widths or 2 seeds, no ``lr``
    grid, a non-positive or unsorted grid, an unknown HP or expectation, or a report asked for a
    result it does not hold."""


class TuneError(HPTransferError):
    """Tuning cannot go on or produced nothing usable: the training function is missing or
    returned no loss, every trial diverged, or worker processes exited with an error. The study
    is kept; the message says how to continue."""


class TransferError(HPTransferError):
    """Values cannot be carried to the target or loaded back: the study has no usable trial,
    the target widths are invalid, a target file is unreadable or was written by another schema,
    or the rebuilt model differs from the one tuned."""


class TrainingError(HPTransferError):
    """A training run was asked for with impossible settings: a schedule whose warmup, decay or
    final LR fraction is out of range, or non-positive steps or batch size."""


class WorkerError(HPTransferError):
    """Local worker processes (tuning or check) could not start, because their arguments cannot
    be pickled, or exited with an error. The study is kept; rerun with one worker to see it."""


class OutputPathError(HPTransferError):
    """An output file given to a command cannot be written where asked: its folder does not exist
    (no folder is created for it), or the path is a folder."""
