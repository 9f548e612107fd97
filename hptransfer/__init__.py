"""hptransfer: μP hyperparameter transfer for PyTorch models.

Parametrize any model factory, tune a small proxy with Optuna, carry the values to the target
width and verify that the optima stay put.
"""

from __future__ import annotations

from .check import TransferReport, check_transfer
from .coord import CoordCheckResult, coord_check
from .errors import (
    DataError,
    FactoryError,
    HPTransferError,
    OptimizerConfigError,
    ParametrizationError,
    RecipeError,
    ShapeInferenceError,
    StorageError,
    TrainingDiverged,
)
from .optim import optimizer, optimizer_family, param_groups
from .parametrizations import (
    SP,
    MuP,
    Parametrization,
    available_parametrizations,
    get_parametrization,
    register_parametrization,
)
from .parametrize import attach_table, parametrize
from .recipe import Recipe, load_recipe
from .table import ModuleScaling, ParamInfo, ScalingTable, scaling_table
from .transfer import load, transfer
from .tune import tune

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # tuning engine (hptransfer.tune / hptransfer.transfer name the functions; import helpers from the modules)
    "tune",
    "transfer",
    "load",
    "load_recipe",
    "Recipe",
    # parametrization layer
    "parametrize",
    "param_groups",
    "optimizer",
    "optimizer_family",
    "scaling_table",
    "attach_table",
    "ScalingTable",
    "ParamInfo",
    "ModuleScaling",
    "Parametrization",
    "SP",
    "MuP",
    "register_parametrization",
    "get_parametrization",
    "available_parametrizations",
    # transfer check
    "check_transfer",
    "TransferReport",
    # coordinate check
    "coord_check",
    "CoordCheckResult",
    # errors
    "HPTransferError",
    "FactoryError",
    "ShapeInferenceError",
    "ParametrizationError",
    "OptimizerConfigError",
    "RecipeError",
    "StorageError",
    "TrainingDiverged",
    "DataError",
]
