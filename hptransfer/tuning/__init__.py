"""Proxy tuning with Optuna: the objective, divergence handling, samplers, pruners, workers, resume.

:func:`tune` runs a study from a recipe or from your own ``train_fn`` (which stands for a recipe:
:func:`recipe_from_train_fn`); :class:`TuneResult` holds the best values.
"""

from __future__ import annotations

from ._settings import recipe_from_train_fn
from ._tune import TuneResult, tune

__all__ = ["tune", "TuneResult", "recipe_from_train_fn"]
