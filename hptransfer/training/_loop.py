"""The training loop shared by tuning, transfer runs and verification sweeps.

Three pieces a user's own loop can reuse too:

* :class:`Schedule` -- warmup then decay, as a multiplier on every group's LR (so μP's
  per-group ratios are kept);
* :class:`DivergenceGuard` -- checked every step: a non-finite loss, or a loss far above its
  starting value, raises :class:`~hptransfer.errors.TrainingDiverged` so the run stops early;
* a ``report(step, loss)`` callback -- the tuner passes one that feeds Optuna's pruner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import TrainingDiverged, TrainingError
from ..recipe._sections import DIVERGENCE_FACTOR

__all__ = ["Schedule", "DivergenceGuard", "TrainResult", "train", "task_loss"]

DECAYS = ("cosine", "linear", "constant")


def _describe(t: Any) -> str:
    return f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" if isinstance(t, torch.Tensor) else type(t).__name__


def task_loss(model: nn.Module, task: Any, x: Any, y: Any) -> torch.Tensor:
    """``task.loss(model(x), y)``, where a failure of the model on the task's batch (a vocabulary
    smaller than the task's tokens, an input size the model does not take) becomes a
    :class:`~hptransfer.errors.TrainingError` naming the batch, the sizes the task feeds and the fix.

    The training loop calls it on its first step only: a later failure is not a mismatch of model
    and task, and keeps its own traceback.
    """
    try:
        return task.loss(model(x), y)
    except (TrainingError, TrainingDiverged):
        raise
    except Exception as exc:  # the user's model on our batch: any failure is reported, with its type
        sizes = getattr(task, "model_kwargs", None)
        feeds = f" (the task's sizes: {sizes()})" if callable(sizes) else ""
        raise TrainingError(
            f"the model failed on the task's first batch (input {_describe(x)}, target {_describe(y)}){feeds}: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}. Fix: build the model for this task (its "
            "vocabulary, input and output sizes in model.kwargs or model.config), or choose the task that "
            "matches the model (task.name, task.kwargs)."
        ) from exc


@dataclass(frozen=True)
class Schedule:
    """LR multiplier over training: linear warmup, then decay.

    Attributes:
        warmup: fraction of the steps spent warming up linearly from 0 (default 0.0).
        decay: ``"cosine"`` (default), ``"linear"`` or ``"constant"`` after warmup.
        min_lr_frac: the multiplier at the last step, as a fraction of the peak (default 0.1).
    """

    warmup: float = 0.0
    decay: str = "cosine"
    min_lr_frac: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.warmup < 1.0:
            raise TrainingError(f"schedule warmup={self.warmup!r} must be a fraction in [0, 1).")
        if self.decay not in DECAYS:
            raise TrainingError(f"schedule decay={self.decay!r} is unknown. Fix: use one of {', '.join(DECAYS)}.")
        if not 0.0 <= self.min_lr_frac <= 1.0:
            raise TrainingError(f"schedule min_lr_frac={self.min_lr_frac!r} must be in [0, 1].")

    def factor(self, step: int, total: int) -> float:
        """The LR multiplier at ``step`` (0-based) of ``total`` steps."""
        warm = round(self.warmup * total)
        if step < warm:
            return (step + 1) / warm
        if self.decay == "constant" or total - warm <= 1:
            return 1.0
        progress = (step - warm) / (total - warm - 1)
        if self.decay == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_frac + (1.0 - self.min_lr_frac) * shape


@dataclass
class DivergenceGuard:
    """Stops a run whose loss is non-finite or above ``factor`` x its reference.

    The reference is the larger of the first step's loss and ``floor`` (e.g. the loss of a
    uniform predictor), so a run that starts low and explodes is caught, while ordinary noise
    is not. Default ``factor``: :data:`hptransfer.recipe._sections.DIVERGENCE_FACTOR` (3, with the reason).
    """

    factor: float = DIVERGENCE_FACTOR
    floor: float = 0.0
    reference: float | None = None

    def check(self, step: int, loss: float) -> None:
        """Raise :class:`TrainingDiverged` if ``loss`` (a float) at ``step`` means divergence; a
        non-finite loss at step 0 gets the reason :data:`AT_INIT` (a model problem, not the LR)."""
        if not math.isfinite(loss):
            if step == 0 and self.reference is None:  # before any update: the model, not the learning rate
                raise TrainingDiverged(step, loss, AT_INIT)
            raise TrainingDiverged(step, loss, "non-finite loss")
        if self.reference is None:
            self.reference = max(loss, self.floor)
            return
        if loss > self.factor * self.reference:
            raise TrainingDiverged(step, loss, f"loss above {self.factor:g} x its start ({self.reference:.4g})")


#: Divergence reason of a loss that is not finite before the first update: the model's forward
#: (a division by zero, a log of 0), not the learning rate.
AT_INIT = "non-finite loss at initialization (step 0, before any update): the model's output is not finite"


@dataclass
class TrainResult:
    """What one training run produced.

    ``losses``: training loss per completed step (nats). ``val_loss``: final validation loss
    (``math.inf`` when diverged). ``diverged``: the guard stopped the run (``reason`` says why).
    ``steps``: steps completed. ``seconds``: wall time. ``val_curve``: ``(step, val_loss)``.
    ``diverged_step`` / ``diverged_loss``: the step and the loss that stopped a diverged run
    (the loss that tripped the guard, not the last finite one).
    """

    losses: list[float] = field(default_factory=list)
    val_loss: float = math.inf
    diverged: bool = False
    reason: str | None = None
    steps: int = 0
    seconds: float = 0.0
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    diverged_step: int | None = None
    diverged_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "val_loss": self.val_loss if math.isfinite(self.val_loss) else None,
            "diverged": self.diverged,
            "reason": self.reason,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "final_train_loss": self.losses[-1] if self.losses else None,
        }


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    task: Any,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    schedule: Schedule | None = None,
    guard: DivergenceGuard | None = None,
    report: Callable[[int, float], None] | None = None,
    eval_every: int = 0,
    grad_clip: float | None = None,
    progress: Callable[[int, float], None] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> TrainResult:
    """Train ``model`` on ``task`` for ``steps`` optimizer steps and return a :class:`TrainResult`.

    Batches come from ``task.batch(step, batch_size, seed=seed)``; the loss is ``task.loss``.
    The schedule multiplies every group's initial ``lr`` (default: constant). The guard
    (default :class:`DivergenceGuard` with the task's uniform-predictor loss as floor) is
    checked every step; on divergence the run stops and the result says so -- it never raises
    for divergence. ``report(step, loss)`` is called every step (the tuner's pruning hook; it
    may raise ``optuna.TrialPruned``, which propagates). ``eval_every`` > 0 records the
    validation loss every that many steps. ``start``/``stop`` (default 0 / ``steps``) run only steps
    ``start..stop-1`` of the ``steps``-step schedule: a run cut at a checkpoint and resumed from it
    trains exactly as one uninterrupted run (same batches, same LR at every step).
    """
    if steps < 1 or batch_size < 1:
        raise TrainingError(f"steps={steps} and batch_size={batch_size} must both be >= 1.")
    schedule = schedule or Schedule(decay="constant")
    guard = guard or DivergenceGuard(floor=float(getattr(task, "init_loss_bound", 0.0)))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    result = TrainResult(steps=start)
    t0 = time.perf_counter()
    model.train()
    try:
        for step in range(start, steps if stop is None else min(stop, steps)):
            f = schedule.factor(step, steps)
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr * f
            x, y = task.batch(step, batch_size, seed=seed)
            loss = task_loss(model, task, x, y) if step == start else task.loss(model(x), y)
            value = float(loss.detach())
            guard.check(step, value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            result.losses.append(value)
            result.steps = step + 1
            if report is not None:
                report(step, value)
            if progress is not None:
                progress(step, value)
            if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
                result.val_curve.append((step + 1, task.eval_loss(model)))
    except TrainingDiverged as exc:
        result.diverged, result.reason = True, exc.reason
        result.diverged_step, result.diverged_loss = exc.step, exc.loss
        result.val_loss = math.inf
    finally:
        for g, lr in zip(optimizer.param_groups, base_lrs):
            g["lr"] = lr
        result.seconds = time.perf_counter() - t0
    if not result.diverged:
        result.val_loss = float(task.eval_loss(model))
        if not math.isfinite(result.val_loss):
            result.diverged, result.reason, result.diverged_step, result.diverged_loss = (
                True, "non-finite validation loss", result.steps, result.val_loss)
            result.val_loss = math.inf
        else:
            result.val_curve.append((result.steps, result.val_loss))
    return result
