"""hptransfer: μP hyperparameter transfer for PyTorch models.

Parametrize any model factory, tune a small proxy with Optuna, carry the values to the target
width and verify that the optima stay put.

The package is laid out by noun (docs/architecture.md has the table): parametrization, recipe,
zoo (reference models and tasks), training, studies, tuning, targets, check, coord, diagnostics,
hf and cli. Each verb has one implementation behind two doors, a recipe and a Python call. The
names below are imported on first use, so ``import hptransfer`` costs next to nothing (torch,
Optuna, scipy and matplotlib load only when a feature needs them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _io  # noqa: F401  (stdlib only; installs the filter that hides secrets in the package's log records)
from ._version import __version__
from .errors import (
    CheckError,
    CoordCheckError,
    DataError,
    DepthInferenceError,
    ExitCode,
    FactoryError,
    HPTransferError,
    HPTransferWarning,
    OptimizerConfigError,
    OutputPathError,
    ParametrizationError,
    RecipeError,
    ShapeInferenceError,
    StorageError,
    StorageLostError,
    TrainingDiverged,
    TrainingError,
    TransferError,
    TuneError,
    WorkerError,
)

#: Public name -> the subpackage that defines it (imported lazily by ``__getattr__``).
_LAZY: dict[str, str] = {
    # tuning engine
    "tune": "tuning", "TuneResult": "tuning",
    "transfer": "targets", "load": "targets", "run": "targets", "Target": "targets", "Loaded": "targets",
    "RunResult": "targets",
    "load_recipe": "recipe", "Recipe": "recipe", "RunSpec": "recipe",
    "build": "training", "Built": "training",
    # parametrization layer
    "parametrize": "parametrization", "param_groups": "parametrization", "optimizer": "parametrization",
    "optimizer_family": "parametrization", "lr_scheduler": "parametrization", "scaling_table": "parametrization",
    "attach_table": "parametrization",
    "ScalingTable": "parametrization", "ParamInfo": "parametrization", "ModuleScaling": "parametrization",
    "Parametrization": "parametrization", "SP": "parametrization", "MuP": "parametrization",
    "register_parametrization": "parametrization", "get_parametrization": "parametrization",
    "available_parametrizations": "parametrization", "write_bsh": "parametrization", "read_bsh": "parametrization",
    # transfer check
    "check_transfer": "check", "check_recipe": "check", "TransferReport": "check", "Tolerances": "check",
    # coordinate check
    "coord_check": "coord", "CoordCheckResult": "coord",
}

__all__ = [
    "__version__",
    # tuning engine
    "tune", "TuneResult", "transfer", "load", "run", "Target", "Loaded", "RunResult", "load_recipe", "Recipe",
    "RunSpec", "build", "Built",
    # parametrization layer
    "parametrize", "param_groups", "optimizer", "optimizer_family", "lr_scheduler", "scaling_table", "attach_table",
    "ScalingTable", "ParamInfo", "ModuleScaling", "Parametrization", "SP", "MuP", "register_parametrization",
    "get_parametrization", "available_parametrizations", "write_bsh", "read_bsh",
    # transfer check
    "check_transfer", "check_recipe", "TransferReport", "Tolerances",
    # coordinate check
    "coord_check", "CoordCheckResult",
    # errors
    "HPTransferError", "FactoryError", "ShapeInferenceError", "DepthInferenceError", "ParametrizationError",
    "OptimizerConfigError",
    "RecipeError", "StorageError", "StorageLostError", "TrainingDiverged", "DataError", "TuneError", "TransferError",
    "CheckError", "TrainingError", "WorkerError", "CoordCheckError", "OutputPathError", "ExitCode", "HPTransferWarning",
]


def __getattr__(name: str) -> Any:
    sub = _LAZY.get(name)
    if sub is None:
        raise AttributeError(f"module 'hptransfer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{sub}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - static analysers see the eager imports
    from .check import Tolerances, TransferReport, check_recipe, check_transfer
    from .coord import CoordCheckResult, coord_check
    from .parametrization import (
        SP,
        ModuleScaling,
        MuP,
        Parametrization,
        ParamInfo,
        ScalingTable,
        attach_table,
        available_parametrizations,
        get_parametrization,
        optimizer,
        optimizer_family,
        param_groups,
        parametrize,
        register_parametrization,
        scaling_table,
    )
    from .recipe import Recipe, RunSpec, load_recipe
    from .targets import Loaded, RunResult, Target, load, run, transfer
    from .training import Built, build
    from .tuning import TuneResult, tune
