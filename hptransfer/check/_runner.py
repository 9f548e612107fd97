"""Training runs for the verification sweep: from a model factory + task, or from a recipe.

Both runners are picklable (sweep workers are spawned processes) and describe themselves with
a stable ``fingerprint()`` so that a changed setting starts a new study instead of mixing
results with an old one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import CheckError
from ..parametrization import OPTIMIZERS
from ..recipe import (
    TUNABLE,
    ModelSpec,
    OptimizerSpec,
    ParametrizationSpec,
    Recipe,
    RunSpec,
    RunTrainSpec,
    ScheduleSpec,
    TaskSpec,
)
from ..training import Schedule, TrainResult, make_task, run, untrained_loss

__all__ = ["ModelRunner", "RecipeRunner", "SWEEPABLE", "describe"]

#: HPs the check can sweep: the tunable ones that are strictly positive (grids are in log2).
#: Derived from ``TUNABLE``, so a new positive HP is sweepable with no edit here.
SWEEPABLE: tuple[str, ...] = tuple(hp for hp, (_, _, low, _, excl) in TUNABLE.items() if low == 0.0 and excl)


def describe(obj: Any) -> str:
    """A process-independent description of a callable (no memory addresses), for fingerprints."""
    if isinstance(obj, functools.partial):
        return f"partial({describe(obj.func)}, {obj.args!r}, {sorted(obj.keywords.items())!r})"
    name = getattr(obj, "__qualname__", None)
    if name is not None:
        return f"{getattr(obj, '__module__', '?')}.{name}"
    state = getattr(obj, "__dict__", {})
    inner = ", ".join(f"{k}={describe(v) if callable(v) else repr(v)}" for k, v in sorted(state.items()))
    return f"{type(obj).__module__}.{type(obj).__qualname__}({inner})"


@dataclass
class ModelRunner:
    """Train ``factory`` on ``task`` at one width, parametrization, seed and HP values.

    Attributes:
        factory: ``width -> nn.Module`` (module-level for ``workers > 1``).
        task: a :class:`hptransfer.tasks.Task` (batches, loss, validation loss).
        steps: optimizer steps per run (the same at every width: μP says nothing about the
            horizon, shared/RULES.md).
        batch_size: examples per step, the same at every width.
        base_width: base width of the parametrization.
        optimizer: ``"adam"`` (default), ``"adamw"`` or ``"sgd"``.
        schedule: LR schedule (default constant).
        parametrize_options: extra keyword arguments for :func:`hptransfer.parametrize`.
        optimizer_options: ``betas``, ``eps``, ``momentum`` for the torch optimizer.
        divergence_factor: a run diverges when its loss exceeds this multiple of its start.
    """

    factory: Callable[..., nn.Module]
    task: Any
    steps: int
    batch_size: int
    base_width: int
    optimizer: str = "adam"
    schedule: Schedule = field(default_factory=lambda: Schedule(decay="constant"))
    parametrize_options: dict[str, Any] = field(default_factory=dict)
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    divergence_factor: float = RunTrainSpec.divergence_factor

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise CheckError(f"optimizer={self.optimizer!r} is unknown for check_transfer. Fix: use one of "
                             f"{', '.join(OPTIMIZERS)}.")
        unknown = set(self.optimizer_options) - {"betas", "eps", "momentum"}
        if unknown:
            raise CheckError(f"optimizer_options {sorted(unknown)} are not understood. Fix: pass only betas, eps "
                             "and momentum.")

    @property
    def penalty(self) -> float:
        """Value reported to Optuna for a diverged run: the task's untrained loss (nats)."""
        return float(getattr(self.task, "init_loss_bound", 1e6))

    def fingerprint(self) -> str:
        return repr((describe(self.factory), repr(self.task), self.steps, self.batch_size, self.base_width,
                     self.optimizer, self.schedule, sorted(self.parametrize_options.items()),
                     sorted(self.optimizer_options.items()), self.divergence_factor))

    def spec(self, parametrization: str, width: int, seed: int, hps: dict[str, float]) -> RunSpec:
        """The run spec of one sweep point (the factory and task travel beside it)."""
        o = dict(self.optimizer_options)
        betas = o.pop("betas", (OptimizerSpec.beta1, OptimizerSpec.beta2))
        opts = {k: v for k, v in self.parametrize_options.items() if k in ("output_mult", "attn_mult",
                                                                          "zero_readout", "zero_query")}
        if "base_std" in self.parametrize_options:
            opts["init_std"] = self.parametrize_options["base_std"]
        s = self.schedule
        return RunSpec(
            width=int(width), model=ModelSpec(), task=TaskSpec(),
            parametrization=ParametrizationSpec(name=parametrization, base_width=self.base_width, **opts),
            optimizer=OptimizerSpec(name=self.optimizer, beta1=float(betas[0]), beta2=float(betas[1]), **o),
            schedule=ScheduleSpec(warmup=s.warmup, decay=s.decay, min_lr_frac=s.min_lr_frac),
            train=RunTrainSpec(batch_size=self.batch_size, steps=self.steps, divergence_factor=self.divergence_factor),
            seed=int(seed),
        ).with_values(hps)

    def __call__(self, parametrization: str, width: int, seed: int, hps: dict[str, float],
                 report: Callable[[int, float], None] | None = None) -> TrainResult:
        extra = {k: v for k, v in self.parametrize_options.items()
                 if k not in ("output_mult", "attn_mult", "zero_readout", "zero_query", "base_std")}
        return run(self.spec(parametrization, width, seed, hps), factory=self.factory, task=self.task,
                   parametrize_extra=extra, role="check", report=report)


@dataclass
class RecipeRunner:
    """One run of a recipe's training with the parametrization swapped and HPs overridden.

    Uses the recipe's own model, task, optimizer, schedule and divergence settings (through
    :meth:`Recipe.at` and :func:`hptransfer.training.run`), with ``steps``/``batch_size`` from the
    ``check`` section when set. A recipe with its own ``task.train_fn`` gets
    ``hp["parametrization"]`` and must honour it.
    """

    recipe: Recipe
    steps: int
    batch_size: int
    #: ``"width"``: the sweep's points are widths; ``"depth"``: they are depths at ``fixed_width``.
    axis: str = "width"
    fixed_width: int | None = None
    _task: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # Workers rebuild the task (and its data cache) themselves.
        return {**self.__dict__, "_task": None}

    @property
    def penalty(self) -> float:
        value = untrained_loss(self.recipe.task)
        return value if math.isfinite(value) else 1e6

    def fingerprint(self) -> str:
        along = () if self.axis == "width" else (self.axis, self.fixed_width)
        return repr((self.recipe.hash, self.steps, self.batch_size, *along))

    def __call__(self, parametrization: str, width: int, seed: int, hps: dict[str, float],
                 report: Callable[[int, float], None] | None = None) -> TrainResult:
        # along depth the sweep's "width" argument is the point on the depth axis
        w, depth = (width, None) if self.axis == "width" else (int(self.fixed_width or 0), width)
        spec = self.recipe.at(w, dict(hps), seed=seed, parametrization=parametrization, steps=self.steps,
                              batch_size=self.batch_size, depth=depth)
        if self._task is None and spec.task.name is not None:
            self._task = make_task(spec.task)
        return run(spec, task=self._task, role="check", report=report)
