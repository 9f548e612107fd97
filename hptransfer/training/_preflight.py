"""Try a recipe's model before any trial runs, so that bad input fails at once and cleanly.

A tuning study can run for hours before its target width is first built, and a failure inside a
trial reaches the user through Optuna's log (a traceback per trial) before hptransfer's own error.
:func:`preflight` builds what the job will build, cheaply, in the order the job needs it:

* the proxy at each proxy width, for real, and one forward and loss on the task's first batch
  (a vocabulary or input size that does not fit the task);
* every target width on the meta device (shapes, rewrite and optimizer groups; no memory, no
  init), so that a width the factory refuses (a head count that does not divide it, a config
  field that is not an integer there) fails before tuning, not after it.
"""

from __future__ import annotations

import torch

from ..errors import TrainingError
from ..recipe import Recipe
from ._build import build, make_task
from ._loop import task_loss

__all__ = ["preflight"]


def preflight(rec: Recipe) -> None:
    """Build ``rec``'s model at its proxy widths (one forward on the task's first batch) and at its
    target widths on the meta device.

    Nothing is trained and no RNG state of the caller changes. A recipe whose task trains through
    the user's own ``train_fn`` (no model named) is left to that function.

    Raises:
        FactoryError, ParametrizationError, OptimizerConfigError: from the build, naming the width and
            the recipe field that sets it.
        TrainingError: the model fails on the task's batch (names the batch, the task's sizes and the fix).
    """
    if not rec.model.names_model or rec.task.train_fn is not None:
        return
    task = make_task(rec.task)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for width in rec.widths.proxy:
            spec = rec.at(width)
            built = build(spec, task=task, role="proxy")
            if task is not None:
                x, y = task.batch(0, int(spec.train.batch_size or 1), seed=spec.seed)
                try:
                    task_loss(built.model, task, x, y)
                except TrainingError as exc:
                    raise TrainingError(f"at width={width} (the proxy width): {exc}") from None
    for width in rec.widths.target:
        spec = rec.at(width, steps=rec.transfer.steps, batch_size=rec.transfer.batch_size, depth=rec.depths.target)
        build(spec, task=task, device="meta", role="target")
