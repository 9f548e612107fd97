"""Verification: do the optimal hyperparameters stay put as the model gets wider?

:func:`check_recipe` (a recipe's ``check:`` section) is the one implementation; :func:`check_transfer`
(a factory and a task) is its Python door. Both sweep HPs at several widths (or depths) and seeds,
estimate the optimum per width with a bootstrap interval and return a :class:`TransferReport` with
drift, regret and wider-is-better verdicts.
"""

from __future__ import annotations

from ._optimum import Drift, OptimumEstimate
from ._recipe import check_recipe, check_transfer, check_transfer_recipe
from ._report import Tolerances, TransferReport
from ._verdict import ParamResult, Verdict

__all__ = ["check_transfer", "check_recipe", "check_transfer_recipe", "TransferReport", "Tolerances", "ParamResult",
           "Verdict", "Drift", "OptimumEstimate"]
