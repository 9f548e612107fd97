"""The Optuna objective: sample HPs, train the recipe's run spec (built-in or the user's function), record divergence.

Divergence handling follows shared/OPTUNA.md: returning NaN would mark the trial FAIL, and
samplers ignore FAIL trials and keep sampling the diverging region. Instead a diverged trial
returns a finite penalty (the untrained loss) and sets the constraint ``diverged = 1``;
healthy trials set it to 0. GP and TPE then steer away, and ``best_trial`` skips violators.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import TrainingDiverged
from ..recipe import Recipe, SearchParam
from ..studies._storage import awaiting_requeue, mark_ended, mark_worker
from ..training import Reporter, train_spec
from ..training._build import untrained_loss

__all__ = ["Objective", "SurplusTrial", "suggest"]


def suggest(trial: optuna.trial.BaseTrial, space: dict[str, SearchParam]) -> dict[str, Any]:
    """Draw one value per search dimension from ``trial``."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical":
            out[name] = trial.suggest_categorical(name, p.choices)
        else:
            assert p.low is not None and p.high is not None  # parse_search refuses a numeric range without both
            if p.type == "int":
                out[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1))
            else:
                out[name] = trial.suggest_float(name, p.low, p.high, log=p.type == "log_float", step=p.step)
    return out


class SurplusTrial(Exception):
    """A worker asked for a trial after the budget was already used up by the others.

    Workers check the budget and then ask for a trial; two can pass the check together. The
    late one is cancelled before it trains (recorded FAIL with ``surplus=True``, which counts
    neither toward the budget nor as lost work) and its worker stops."""


def _over_budget(trial: optuna.trial.Trial, total: int) -> bool:
    """Optuna numbers trials in creation order; the trials before this one that are not FAIL
    (complete, pruned, running or queued), or failed but about to be re-queued, already fill the
    budget when there are ``total``."""
    earlier = trial.study.get_trials(deepcopy=False)
    held = awaiting_requeue(earlier)
    return sum(1 for t in earlier if t.number < trial.number
               and (t.state != TrialState.FAIL or t.number in held)) >= total


@dataclass
class Objective:
    """Callable objective for ``study.optimize``: mean final validation loss of the recipe's runs over its
    proxy widths x seeds, each the run spec ``recipe.at(width, sampled values, seed=seed)``.

    ``penalty`` is the value of a diverged trial (default: the untrained loss of a built-in task, or
    the first reported loss of a ``train_fn`` run).
    """

    recipe: Recipe
    penalty: float | None = None
    report_every: int = 0
    on_step: Callable[[int, int, float], None] | None = None
    total: int | None = None  # the study's trial budget (set by tune); None: unlimited

    @property
    def widths(self) -> Sequence[int]:
        return self.recipe.widths.proxy

    @property
    def seeds(self) -> Sequence[int]:
        return self.recipe.train.seeds

    @property
    def steps(self) -> int:
        """Steps of one run (0 when a ``train_fn`` recipe does not say): the pruner's resource unit."""
        return int(self.recipe.train.steps or 0)

    def __call__(self, trial: optuna.trial.Trial) -> float:
        if self.total is not None and _over_budget(trial, self.total):
            trial.set_user_attr("surplus", True)
            with contextlib.suppress(RuntimeError):  # stop() is only allowed inside optimize()
                trial.study.stop()
            raise SurplusTrial(f"trial {trial.number} is beyond the budget of {self.total} trials")
        mark_worker(trial)
        try:
            return self._train(trial)
        finally:
            mark_ended(trial)  # a trial failed without this mark was killed or frozen: re-queued

    def _train(self, trial: optuna.trial.Trial) -> float:
        sampled = suggest(trial, self.recipe.search)  # the recipe's fixed values come with Recipe.at
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
                # train_spec checks divergence itself (its loop's guard, or the train_fn's report hook)
                reporter = Reporter(trial, every=self.report_every, offset=i * self.steps, on_step=on_step)
                try:
                    loss = self._one(sampled, width, seed, reporter)
                finally:
                    steps_done += reporter.steps
                    trial.set_user_attr("train_steps", steps_done)
                    if penalty is None:
                        penalty = self._default_penalty(reporter)
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

    def _default_penalty(self, reporter: Reporter) -> float:
        """The untrained loss: the task's uniform-predictor loss, else the run's first reported loss."""
        if self.recipe.task.train_fn is None:
            return untrained_loss(self.recipe.task)
        return reporter.first if reporter.first is not None and math.isfinite(reporter.first) else math.inf

    def _one(self, sampled: dict[str, Any], width: int, seed: int, reporter: Reporter) -> float:
        """Run one training and return its final loss. Raises TrainingDiverged."""
        res = train_spec(self.recipe.at(width, sampled, seed=seed), report=reporter, role="proxy")
        if res.diverged:
            # the step and loss that tripped the guard, and its one reason (not wrapped twice)
            step = res.diverged_step if res.diverged_step is not None else res.steps
            loss = res.diverged_loss if res.diverged_loss is not None else math.nan
            raise TrainingDiverged(step, loss, res.reason or "diverged")
        return res.val_loss
