"""Error hierarchy: every error hptransfer raises on purpose derives from :class:`HPTransferError`.

Each message names the thing that is wrong (parameter, module, recipe field path or width)
and the fix, so that a CLI can print it without a traceback.
"""

from __future__ import annotations

__all__ = [
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


class HPTransferError(Exception):
    """Root of all errors raised by hptransfer for bad input or an impossible request."""


class HPTransferWarning(UserWarning):
    """Something hptransfer cannot do for this model and the user should know about (for example
    attention computed by hand, whose scale cannot be rewritten); the message names the module
    and the fix."""


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
