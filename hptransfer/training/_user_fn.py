"""The user's own training function: the per-step ``report`` hook and the one way to call it.

Recipes with ``task.train_fn`` and the Python form ``tune(train_fn, ...)`` both train through a
function of the user's, called as ``fn(hp, *, width, seed, report)``. :class:`Reporter` is the
``report(step, loss)`` it receives: divergence check, pruning reports, progress.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..errors import TuneError
from ._loop import DivergenceGuard

__all__ = ["Reporter", "call_train_fn"]


class Reporter:
    """The per-step hook a training loop calls as ``report(step, loss)``.

    It checks divergence every step (non-finite loss, or above ``factor`` x the first loss;
    raises :class:`~hptransfer.errors.TrainingDiverged`), reports a smoothed loss to Optuna's
    pruner every ``every`` steps (raises ``optuna.TrialPruned`` when the pruner says so) and
    feeds the progress display. Outside a study (``trial=None``) it only checks divergence.

    Args:
        trial: the Optuna trial, or ``None``.
        every: report to the pruner every this many steps; 0 disables pruning reports.
        offset: added to the step number (several runs per trial report on one axis).
        guard: the divergence check; ``None`` when the training loop checks itself.
        on_step: progress callback ``(step, loss)``.
    """

    def __init__(
        self,
        trial: Any = None,
        *,
        every: int = 0,
        offset: int = 0,
        guard: DivergenceGuard | None = None,
        on_step: Callable[[int, float], None] | None = None,
    ):
        self.trial, self.every, self.offset, self.guard, self.on_step = trial, every, offset, guard, on_step
        self.steps = 0
        self.first: float | None = None
        self._ema: float | None = None

    def __call__(self, step: int, loss: float) -> None:
        loss = float(loss)
        if self.guard is not None:
            self.guard.check(step, loss)
        if self.first is None:
            self.first = loss
        self.steps = step + 1
        # An EMA keeps the pruner from reacting to one noisy batch.
        self._ema = loss if self._ema is None else 0.9 * self._ema + 0.1 * loss
        if self.on_step is not None:
            self.on_step(step, loss)
        if self.trial is not None and self.every and (step + 1) % self.every == 0:
            self.trial.report(self._ema, self.offset + step)
            if self.trial.should_prune():
                import optuna  # only a study's trial gets here

                raise optuna.TrialPruned(f"pruned at step {self.offset + step} (loss {self._ema:.4g})")

    report = __call__


def call_train_fn(fn: Callable[..., Any], hp: dict[str, Any], **kwargs: Any) -> float:
    """Call the user's ``fn(hp, *, width, seed, report)``, passing only the keywords it accepts."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    value = fn(hp, **kwargs)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TuneError(
            f"the training function {getattr(fn, '__name__', fn)!r} returned {type(value).__name__}, not a loss. "
            "Fix: return the final validation loss as a float."
        ) from None
