"""hptransfer: μP hyperparameter transfer for PyTorch models.

Parametrize any model factory, tune a small proxy with Optuna, carry the values to the target
width and verify that the optima stay put.
"""

from __future__ import annotations

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
from .table import ModuleScaling, ParamInfo, ScalingTable, scaling_table

__version__ = "0.1.0"

__all__ = [
    "__version__",
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
