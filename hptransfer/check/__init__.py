"""Verification: do the optimal hyperparameters stay put as the model gets wider?

:func:`check_transfer` (a factory and a task) and :func:`check_recipe` (a recipe's ``check:``
section) sweep HPs at several widths and seeds, estimate the optimum per width with a bootstrap
interval and return a :class:`TransferReport` with drift, regret and wider-is-better verdicts.
"""

from __future__ import annotations

from ._check import check_grid, check_transfer
from ._optimum import DEFAULT_N_BOOT, Drift, OptimumEstimate, bootstrap_optima
from ._recipe import check_depths, check_recipe, check_widths, grid_values
from ._report import Tolerances, TransferReport
from ._runner import SWEEPABLE, ModelRunner, RecipeRunner
from ._sweep import Runner, SweepData, SweepPlan
from ._verdict import ParamResult

__all__ = [
    "check_transfer", "check_recipe", "check_grid", "TransferReport", "Tolerances", "ParamResult", "OptimumEstimate",
    "Drift", "DEFAULT_N_BOOT", "bootstrap_optima", "grid_values", "check_widths", "check_depths", "ModelRunner",
    "RecipeRunner", "SWEEPABLE", "Runner",
    "SweepPlan", "SweepData",
]
