"""The check's training runs: one run of a recipe with the parametrization swapped and HPs overridden.

The runner is picklable (sweep workers are spawned processes) and describes itself with a stable
``fingerprint()``, so that a changed setting starts a new study instead of mixing results with an
old one. Both doors of the check (a recipe, ``check_transfer(factory, task, ...)``) run through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..recipe import Recipe
from ..training import TrainResult, train_spec
from ..training._build import make_task, untrained_loss

__all__ = ["RecipeRunner"]


@dataclass
class RecipeRunner:
    """One run of a recipe's training with the parametrization swapped and HPs overridden.

    Uses the recipe's own model, task, optimizer, schedule and divergence settings (through
    :meth:`Recipe.at` and :func:`hptransfer.training.train_spec`), with ``steps``/``batch_size`` from
    the ``check`` section when set. A recipe with its own ``task.train_fn`` gets
    ``hp["parametrization"]`` and must honour it.
    """

    recipe: Recipe
    steps: int | None
    batch_size: int | None
    #: ``"width"``: the sweep's points are widths; ``"depth"``: they are depths at ``fixed_width``.
    axis: str = "width"
    fixed_width: int | None = None
    _task: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # Workers rebuild a built-in task (and its data cache) themselves; a task object given from
        # Python travels with the recipe.
        return {**self.__dict__, "_task": None}

    @property
    def penalty(self) -> float:
        value = untrained_loss(self.recipe.task)
        return value if math.isfinite(value) else 1e6

    def fingerprint(self) -> str:
        along = () if self.axis == "width" else (self.axis, self.fixed_width)
        return repr((self.recipe.hash, self.steps, self.batch_size, *along))

    def __call__(self, parametrization: str, width: int, seed: int, hps: dict[str, float],
                 report: Callable[[int, float], None] | None = None) -> TrainResult:
        # along depth the sweep's "width" argument is the point on the depth axis
        w, depth = (width, None) if self.axis == "width" else (int(self.fixed_width or 0), width)
        spec = self.recipe.at(w, dict(hps), seed=seed, parametrization=parametrization, steps=self.steps,
                              batch_size=self.batch_size, depth=depth)
        if self._task is None and spec.task.name is not None:
            self._task = make_task(spec.task)
        return train_spec(spec, task=self._task, role="check", report=report)
