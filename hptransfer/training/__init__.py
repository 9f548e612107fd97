"""One training run: the one build path from a :class:`~hptransfer.recipe.RunSpec`, and the loop.

``build(spec)`` gives model, optimizer, task and schedule; ``run(spec)`` trains once (a built-in
task in :func:`train`, or the user's own ``task.train_fn``) and returns a :class:`TrainResult`.
"""

from __future__ import annotations

from ._build import (
    Built,
    WidthFactory,
    build,
    make_factory,
    make_optimizer,
    make_schedule,
    make_task,
    model_cost,
    optimizer_kwargs,
    parametrize_options,
    run,
    torch_threads,
    untrained_loss,
)
from ._gains import GAIN_MODES, apply_gains, norm_gains
from ._loop import AT_INIT, DivergenceGuard, Schedule, TrainResult, task_loss, train
from ._preflight import preflight
from ._user_fn import Reporter, call_train_fn

__all__ = ["AT_INIT",
    "build", "make_optimizer", "run", "Built", "train", "Schedule", "DivergenceGuard", "TrainResult", "Reporter",
    "call_train_fn",
    "make_factory", "make_task", "make_schedule", "parametrize_options", "optimizer_kwargs", "model_cost",
    "untrained_loss", "torch_threads", "WidthFactory", "norm_gains", "apply_gains", "GAIN_MODES",
    "task_loss", "preflight",
]
