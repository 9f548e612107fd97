"""One training run: the one build path from a :class:`~hptransfer.recipe.RunSpec`, and the loop.

``build(spec)`` gives model, optimizer, task and schedule; ``train_spec(spec)`` trains once (a
built-in task in :func:`train`, or the user's own ``task.train_fn``) and returns a :class:`TrainResult`.
"""

from __future__ import annotations

from ._build import Built, build
from ._loop import Schedule, TrainResult, train
from ._run import train_spec
from ._user_fn import Reporter

__all__ = ["build", "Built", "train_spec", "train", "TrainResult", "Schedule", "Reporter"]
