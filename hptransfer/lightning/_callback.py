"""The Lightning callback behind ``hptransfer.lightning.ReportCallback`` (imports Lightning)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl

__all__ = ["ReportCallback"]


class ReportCallback(pl.Callback):
    """Calls ``report(step, loss)`` once per optimizer step with the loss ``training_step`` returned.

    ``step`` is the 0-based optimizer step (``trainer.global_step - 1`` after the update), so with
    gradient accumulation it is called once per step, with the last micro-batch's loss. What
    ``report`` raises (``optuna.TrialPruned`` when the pruner stops the trial,
    :class:`hptransfer.TrainingDiverged` on divergence) ends ``trainer.fit`` and reaches
    :func:`hptransfer.tune`, which records the trial as pruned or diverged.

    Args:
        report: the ``report`` your ``train_fn(hp, *, width, seed, report)`` was given.
    """

    def __init__(self, report: Callable[[int, float], Any]) -> None:
        self.report = report
        self._last = -1

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        step = trainer.global_step - 1
        if loss is None or step <= self._last:  # manual optimization returning nothing; an accumulating micro-batch
            return
        self._last = step
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        self.report(step, value)  # a non-finite loss is report's to judge (divergence)
