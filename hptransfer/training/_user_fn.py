"""The user's own training function: the per-step ``report`` hook and the one way to call it.

Recipes with ``task.train_fn`` and the Python form ``tune(train_fn, ...)`` both train through a
function of the user's, called as ``fn(hp, *, width, seed, report)``. :class:`Reporter` is the
``report(step, loss)`` it receives: divergence check, pruning reports, progress.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import TuneError, warn
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
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    report = _Counted(kwargs["report"]) if kwargs.get("report") is not None else None
    if report is not None:
        kwargs["report"] = report
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    value = fn(hp, **kwargs)
    if report is not None and report.calls == 0:
        # Nothing is lost but what report() feeds: say so once (warn() drops the same text again).
        warn(
            f"the training function {getattr(fn, '__name__', fn)!r} returned without calling report(step, loss)"
            f"{'' if 'report' in kwargs else ' (it takes no report argument)'}: a diverging run is not stopped "
            "early, nothing can be pruned and its compute counts as 0 steps. Fix: call report(step, loss) after "
            "every optimizer step.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TuneError(
            f"the training function {getattr(fn, '__name__', fn)!r} returned {type(value).__name__}, not a loss. "
            "Fix: return the final validation loss as a float."
        ) from None


class _Counted:
    """The ``report`` hook as passed on, counting its calls (a loop that never reports is warned about)."""

    def __init__(self, inner: Callable[[int, float], None]) -> None:
        self._inner, self.calls = inner, 0

    def __call__(self, step: int, loss: float) -> None:
        self.calls += 1
        self._inner(step, loss)

    report = __call__  # Reporter's alias: report.report(step, loss) counts too

    def __getattr__(self, name: str) -> Any:  # anything else a loop reads from the hook it was given
        if name == "_inner":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)
