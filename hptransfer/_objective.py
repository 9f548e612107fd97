"""The Optuna objective: sample HPs, train (built-in or the user's function), record divergence.

Divergence handling follows shared/OPTUNA.md: returning NaN would mark the trial FAIL, and
samplers ignore FAIL trials and keep sampling the diverging region. Instead a diverged trial
returns a finite penalty (the untrained loss) and sets the constraint ``diverged = 1``;
healthy trials set it to 0. GP and TPE then steer away, and ``best_trial`` skips violators.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from ._storage import mark_worker
from .errors import HPTransferError, TrainingDiverged
from .recipe import Recipe, SearchParam
from .train import DivergenceGuard

__all__ = ["Reporter", "Objective", "suggest"]


def suggest(trial: optuna.trial.BaseTrial, space: dict[str, SearchParam]) -> dict[str, Any]:
    """Draw one value per search dimension from ``trial``."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical":
            out[name] = trial.suggest_categorical(name, p.choices)
        elif p.type == "int":
            out[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1))
        else:
            out[name] = trial.suggest_float(name, p.low, p.high, log=p.type == "log_float", step=p.step)
    return out


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
        trial: optuna.trial.Trial | None = None,
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
                raise optuna.TrialPruned(f"pruned at step {self.offset + step} (loss {self._ema:.4g})")

    report = __call__


class SurplusTrial(Exception):
    """A worker asked for a trial after the budget was already used up by the others.

    Workers check the budget and then ask for a trial; two can pass the check together. The
    late one is cancelled before it trains (recorded FAIL with ``surplus=True``, which counts
    neither toward the budget nor as lost work) and its worker stops."""


def _over_budget(trial: optuna.trial.Trial, total: int) -> bool:
    """Optuna numbers trials in creation order; the trials before this one that are not FAIL
    (complete, pruned, running or queued) already fill the budget when there are ``total``."""
    earlier = trial.study.get_trials(deepcopy=False)
    return sum(1 for t in earlier if t.number < trial.number and t.state != TrialState.FAIL) >= total


@dataclass
class Objective:
    """Callable objective for ``study.optimize``: mean final validation loss over widths x seeds.

    Exactly one of ``recipe`` (built-in training, or the recipe's ``task.train_fn``) and
    ``train_fn`` (Python API) drives training. ``penalty`` is the value of a diverged trial
    (default: the untrained loss of the task, or the first reported loss of the run).
    """

    space: dict[str, SearchParam]
    widths: Sequence[int]
    seeds: Sequence[int]
    steps: int
    recipe: Recipe | None = None
    train_fn: Callable[..., float] | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    penalty: float | None = None
    report_every: int = 0
    divergence_factor: float = 3.0
    on_step: Callable[[int, int, float], None] | None = None
    total: int | None = None  # the study's trial budget (set by tune); None: unlimited

    def __call__(self, trial: optuna.trial.Trial) -> float:
        if self.total is not None and _over_budget(trial, self.total):
            trial.set_user_attr("surplus", True)
            with contextlib.suppress(RuntimeError):  # stop() is only allowed inside optimize()
                trial.study.stop()
            raise SurplusTrial(f"trial {trial.number} is beyond the budget of {self.total} trials")
        mark_worker(trial)
        sampled = suggest(trial, self.space)
        hp = self.recipe.values(sampled) if self.recipe is not None else {**self.fixed, **sampled}
        if self.recipe is not None:
            hp.update(self.fixed)
        losses: list[float] = []
        steps_done = 0
        penalty = self.penalty
        try:
            for i, (width, seed) in enumerate((w, s) for w in self.widths for s in self.seeds):
                on_step = None
                if self.on_step is not None:
                    cb = self.on_step
                    n = trial.number

                    def on_step(step: int, loss: float, cb: Callable = cb, n: int = n) -> None:
                        cb(n, step, loss)
                builtin = self.recipe is not None and self.recipe.task.train_fn is None
                reporter = Reporter(trial, every=self.report_every, offset=i * self.steps, on_step=on_step,
                                    guard=None if builtin else DivergenceGuard(factor=self.divergence_factor))
                try:
                    loss = self._one(hp, width, seed, reporter, builtin)
                finally:
                    steps_done += reporter.steps
                    trial.set_user_attr("train_steps", steps_done)
                    if penalty is None:
                        penalty = self._default_penalty(reporter, builtin)
                if not math.isfinite(loss):
                    raise TrainingDiverged(reporter.steps, loss, "non-finite final loss")
                losses.append(loss)
        except TrainingDiverged as exc:
            trial.set_user_attr("diverged", True)
            trial.set_user_attr("diverged_reason", str(exc))
            trial.set_constraint("diverged", 1.0)
            return float(penalty if penalty is not None and math.isfinite(penalty) else 1e6)
        except KeyboardInterrupt:
            # Optuna marks the trial FAIL; the flag lets the next start re-queue its parameters.
            trial.set_user_attr("interrupted", True)
            raise
        trial.set_user_attr("diverged", False)
        trial.set_constraint("diverged", 0.0)
        return float(sum(losses) / len(losses))

    def _default_penalty(self, reporter: Reporter, builtin: bool) -> float:
        """The untrained loss: the task's uniform-predictor loss, else the run's first reported loss."""
        if builtin:
            from ._build import untrained_loss

            return untrained_loss(self.recipe)
        return reporter.first if reporter.first is not None and math.isfinite(reporter.first) else math.inf

    def _one(self, hp: dict[str, Any], width: int, seed: int, reporter: Reporter, builtin: bool) -> float:
        """Run one training and return its final loss. Raises TrainingDiverged."""
        if builtin:
            from ._build import run_training

            res = run_training(self.recipe, hp, width, seed=seed, report=reporter)
            if res.diverged:
                raise TrainingDiverged(res.steps, res.losses[-1] if res.losses else math.nan, res.reason or "")
            return res.val_loss
        fn = self.train_fn
        if fn is None:
            from .recipe import import_object

            fn = import_object(self.recipe.task.train_fn, "task.train_fn")
        return call_train_fn(fn, hp, width=width, seed=seed, report=reporter)


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
        raise HPTransferError(
            f"the training function {getattr(fn, '__name__', fn)!r} returned {type(value).__name__}, not a loss. "
            "Fix: return the final validation loss as a float."
        ) from None
