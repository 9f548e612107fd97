"""One training run of a spec: :func:`train_spec`, for a built-in task (this package's loop) or the user's
own ``task.train_fn`` (called with exactly what the spec holds)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .._io import user_frame
from ..errors import DataError, TrainingDiverged, TrainingError
from ..recipe import RunSpec
from ..recipe._spec import import_object
from ._build import _optimizer, build
from ._loop import DivergenceGuard, TrainResult, train
from ._user_fn import Reporter, call_train_fn

__all__ = ["train_spec"]


def train_spec(
    spec: RunSpec,
    *,
    factory: Callable[..., nn.Module] | None = None,
    task: Any = None,
    report: Callable[[int, float], None] | None = None,
    progress: Callable[[int, float], None] | None = None,
    eval_every: int | None = None,
    parametrize_extra: Mapping[str, Any] | None = None,
    role: str | None = None,
) -> TrainResult:
    """Train the spec once; divergence is recorded in the result, never raised.

    A built-in task trains in this package's loop; a ``task.train_fn`` is called as
    ``fn(hp, *, width, seed, report, spec)`` (the keywords it takes) with ``hp = spec.values()``, plus
    ``parametrization`` (its name) when the spec has one.
    ``report(step, loss)`` is called every step (the tuner's pruning hook; it may raise
    ``optuna.TrialPruned``); ``progress(step, loss)`` feeds a display; ``eval_every``
    (default ``spec.train.eval_every``) records validation losses along the way. ``role``
    (``"proxy"``, ``"target"``, ``"check"``) is named in factory errors.
    """
    if spec.task.train_fn is not None:
        return _run_user_fn(spec, report, progress)
    b = build(spec, factory=factory, task=task, parametrize_extra=parametrize_extra, role=role)
    assert b.optimizer is not None  # a built-in task's recipe always has its optimizer section
    guard = DivergenceGuard(factor=spec.train.divergence_factor, floor=float(getattr(b.task, "init_loss_bound", 0.0)))
    where = f"width={spec.width} (the {role or 'requested'} width)"
    try:
        return train(b.model, b.optimizer, b.task, steps=int(spec.train.steps or 0), seed=spec.seed,
                     batch_size=int(spec.train.batch_size or 0), schedule=b.schedule, guard=guard, report=report,
                     progress=progress, grad_clip=_optimizer(spec).grad_clip,
                     eval_every=spec.train.eval_every if eval_every is None else eval_every)
    except (DataError, TrainingError) as exc:  # the model's output does not fit the task
        raise type(exc)(f"at {where}: {exc}") from None
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # The user's forward (or backward) raised: name where in their code, without a traceback.
        # An error that never passed through user code is a bug of ours: keep its traceback.
        if not user_frame(exc):
            raise
        raise TrainingError(f"the model raised while training at {where}: {type(exc).__name__}: {exc} "
                            f"{user_frame(exc)}. Fix: run the model on the task's example input by hand "
                            "(task.example_input()) and fix the forward.") from None


def _run_user_fn(spec: RunSpec, report: Callable[[int, float], None] | None,
                 progress: Callable[[int, float], None] | None) -> TrainResult:
    fn = import_object(spec.task.train_fn, "task.train_fn")
    guard = DivergenceGuard(factor=spec.train.divergence_factor)
    losses: list[float] = []

    def hook(step: int, loss: float) -> None:
        guard.check(step, float(loss))
        losses.append(float(loss))
        if report is not None:
            report(step, loss)
        if progress is not None:
            progress(step, loss)

    reporter = report if isinstance(report, Reporter) else None
    out = TrainResult()
    start = time.perf_counter()
    # What the user's code is handed is what the spec (and target.yaml) records: its values, and the
    # parametrization's name only when the recipe sets one.
    hp = spec.values()
    if spec.parametrization is not None:
        hp["parametrization"] = spec.parametrization.name
    try:
        out.val_loss = call_train_fn(fn, hp, width=spec.width, seed=spec.seed, report=hook, spec=spec)
    except TrainingDiverged as exc:
        out.diverged, out.reason, out.diverged_step, out.diverged_loss = True, exc.reason, exc.step, exc.loss
    out.seconds, out.losses, out.steps = time.perf_counter() - start, losses, len(losses)
    if reporter is not None:
        out.steps = max(out.steps, reporter.steps)
    if not math.isfinite(out.val_loss):
        out.diverged, out.val_loss = True, math.inf
        out.reason = out.reason or "non-finite final loss"
        if out.diverged_step is None:
            out.diverged_step, out.diverged_loss = out.steps, math.nan
    elif not out.diverged:
        out.val_curve.append((out.steps, out.val_loss))
    return out
