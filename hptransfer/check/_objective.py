"""The Optuna objective of a check study: one training run per trial, with its steps and checkpoint
losses recorded, and (adaptive check) early stopping of a prunable run against the best one.

User attributes of a finished trial: ``diverged``, ``seconds``, ``steps`` (steps actually trained),
``checkpoints`` (training loss at 25/50/75% of the run, :mod:`._prune`); of a stopped trial
(state PRUNED): ``steps``, ``checkpoints`` and ``pruned_reason``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ..studies._storage import mark_worker
from ._prune import CheckpointPruner, checkpoint_losses

if TYPE_CHECKING:
    from ._sweep import Runner, SweepPlan

__all__ = ["SweepObjective", "accepts_report"]


def accepts_report(runner: Any) -> bool:
    """Whether ``runner(...)`` takes a ``report`` keyword (the per-step hook early stopping needs)."""
    try:
        params = inspect.signature(runner).parameters
    except (TypeError, ValueError):
        return False
    return "report" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _reference(study: optuna.Study, par: str, width: int, seed: int, hp: str, value: float) -> list[float] | None:
    """Checkpoint losses of the best finished run at this (parametrization, width, seed); an empty list
    when another seed of the same grid point was already stopped (the point is known hopeless)."""
    best, ref = math.inf, None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        p = t.params
        if p.get("parametrization") != par or int(p.get("width", -1)) != width:
            continue
        if t.state == TrialState.PRUNED:
            if int(p.get("seed", -1)) != seed and np.isclose(float(p.get(hp, math.nan)), value, rtol=1e-9, atol=0):
                return []
            continue
        cps = t.user_attrs.get("checkpoints")
        if (int(p.get("seed", -1)) == seed and cps and not t.user_attrs.get("diverged")
                and t.value is not None and t.value < best):
            best, ref = float(t.value), list(cps)
    return ref


class SweepObjective:
    """Optuna objective of a check study: one training run per trial.

    ``margins``: stop a trial enqueued with user attribute ``prunable=True`` once its training loss
    at checkpoint ``k`` is above ``(1 + margins[k]) x`` the best finished run's at the same width and
    seed (None: never stop; the full grid uses that).
    """

    def __init__(self, runner: Runner, plan: SweepPlan, on_done: Callable[[dict[str, Any]], None] | None = None,
                 margins: Sequence[float] | None = None):
        self.runner, self.plan, self.on_done, self.margins = runner, plan, on_done, margins

    def _hook(self, trial: optuna.trial.Trial, par: str, width: int, seed: int,
              value: float) -> CheckpointPruner | None:
        steps = getattr(self.runner, "steps", None)
        if not isinstance(steps, int) or not accepts_report(self.runner):
            return None
        ref = None
        if self.margins is not None and trial.user_attrs.get("prunable"):
            ref = _reference(trial.study, par, width, seed, self.plan.hp, value)
            if ref == []:
                trial.set_user_attr("steps", 0)
                trial.set_user_attr("pruned_reason", "another seed of this grid point was stopped")
                raise optuna.TrialPruned("another seed of this grid point was stopped")
        return CheckpointPruner(steps, ref, self.margins or (0.0,))

    def __call__(self, trial: optuna.trial.Trial) -> float:
        mark_worker(trial)
        p = self.plan
        par = trial.suggest_categorical("parametrization", list(p.parametrizations))
        width = int(trial.suggest_categorical("width", list(p.widths)))
        seed = int(trial.suggest_categorical("seed", list(p.seeds)))
        value = float(trial.suggest_float(p.hp, min(p.values), max(p.values), log=True))
        hook = self._hook(trial, par, width, seed, value)
        try:
            if hook is None:
                res = self.runner(par, width, seed, {**p.fixed, p.hp: value})
            else:
                res = self.runner(par, width, seed, {**p.fixed, p.hp: value}, report=hook)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # lets _storage.recover_stale re-queue it
            raise
        except optuna.TrialPruned as exc:
            assert hook is not None  # only the hook stops a run
            trial.set_user_attr("steps", len(hook.losses))
            trial.set_user_attr("checkpoints", hook.values)
            trial.set_user_attr("pruned_reason", str(exc)[:200])
            raise
        diverged = bool(res.diverged) or not math.isfinite(float(res.val_loss))
        trial.set_user_attr("diverged", diverged)
        trial.set_user_attr("seconds", round(float(getattr(res, "seconds", 0.0)), 3))
        losses = list(getattr(res, "losses", []) or [])
        trial.set_user_attr("steps", int(getattr(res, "steps", 0) or len(losses)))
        full = getattr(self.runner, "steps", None)
        if isinstance(full, int) and losses:
            trial.set_user_attr("checkpoints", checkpoint_losses(losses, full))
        if diverged:
            trial.set_user_attr("diverged_reason", str(getattr(res, "reason", "") or "non-finite loss")[:200])
        trial.set_constraint("diverged", 1.0 if diverged else 0.0)
        if self.on_done is not None:
            self.on_done({"hp": p.hp, "parametrization": par, "width": width, "seed": seed, "value": value,
                          "val_loss": float(res.val_loss), "diverged": diverged})
        return float(self.runner.penalty) if diverged else float(res.val_loss)
