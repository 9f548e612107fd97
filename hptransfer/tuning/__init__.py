"""Proxy tuning with Optuna: the objective, divergence handling, samplers, pruners, workers, resume.

:func:`tune` runs a study from a recipe or from your own ``train_fn``; :class:`TuneResult` holds
the best values.
"""

from __future__ import annotations

from ._objective import Objective, SurplusTrial, suggest
from ._samplers import make_pruner, make_sampler
from ._settings import parse_space
from ._tune import TuneResult, tune

__all__ = ["tune", "TuneResult", "make_sampler", "make_pruner", "parse_space", "Objective", "SurplusTrial", "suggest"]
