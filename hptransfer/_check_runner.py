"""Training runs for the verification sweep: from a model factory + task, or from a recipe.

Both runners are picklable (sweep workers are spawned processes) and describe themselves with
a stable ``fingerprint()`` so that a changed setting starts a new study instead of mixing
results with an old one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import HPTransferError, TrainingDiverged
from .optim import param_groups
from .parametrize import parametrize
from .train import DivergenceGuard, Schedule, TrainResult, train

__all__ = ["ModelRunner", "RecipeRunner", "SWEEPABLE", "describe"]

#: HPs the built-in runs can sweep, with where each goes.
SWEEPABLE: dict[str, str] = {
    "lr": "base learning rate (optimizer)",
    "init_std": "weight init std at the base width (parametrize base_std)",
    "output_mult": "readout multiplier (parametrize output_mult)",
    "attn_mult": "attention-logit multiplier (parametrize attn_mult)",
}

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
}


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
        optimizer_options: extra keyword arguments for the torch optimizer (``betas``, ...).
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
    divergence_factor: float = 3.0

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise HPTransferError(f"optimizer={self.optimizer!r} is unknown for check_transfer. Fix: use one of "
                                  f"{', '.join(_OPTIMIZERS)}.")

    @property
    def penalty(self) -> float:
        """Value reported to Optuna for a diverged run: the task's untrained loss (nats)."""
        return float(getattr(self.task, "init_loss_bound", 1e6))

    def fingerprint(self) -> str:
        return repr((describe(self.factory), repr(self.task), self.steps, self.batch_size, self.base_width,
                     self.optimizer, self.schedule, sorted(self.parametrize_options.items()),
                     sorted(self.optimizer_options.items()), self.divergence_factor))

    def __call__(self, parametrization: str, width: int, seed: int, hps: dict[str, float]) -> TrainResult:
        opts = dict(self.parametrize_options)
        for hp, key in (("init_std", "base_std"), ("output_mult", "output_mult"), ("attn_mult", "attn_mult")):
            if hps.get(hp) is not None:
                opts[key] = float(hps[hp])
        if "example_input" not in opts and hasattr(self.task, "example_input"):
            opts["example_input"] = self.task.example_input()
        torch.manual_seed(seed)
        model = parametrize(self.factory, width=width, base_width=self.base_width, parametrization=parametrization,
                            **opts)
        groups = param_groups(model, lr=float(hps["lr"]), weight_decay=float(hps.get("weight_decay") or 0.0),
                              optimizer=self.optimizer)
        opt = _OPTIMIZERS[self.optimizer](groups, lr=float(hps["lr"]), **self.optimizer_options)
        guard = DivergenceGuard(factor=self.divergence_factor, floor=float(getattr(self.task, "init_loss_bound", 0)))
        return train(model, opt, self.task, steps=self.steps, batch_size=self.batch_size, seed=seed,
                     schedule=self.schedule, guard=guard)


@dataclass
class RecipeRunner:
    """One run of a recipe's training with the parametrization swapped and HPs overridden.

    Uses the recipe's own model, task, optimizer, schedule and divergence settings
    (``hptransfer._build``), with ``steps``/``batch_size`` from the ``check`` section when set.
    A recipe with its own ``task.train_fn`` gets ``hp["parametrization"]`` and must honour it.
    """

    recipe: Any
    steps: int
    batch_size: int
    _task: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # Workers rebuild the task (and its data cache) themselves.
        return {**self.__dict__, "_task": None}

    @property
    def penalty(self) -> float:
        from ._build import untrained_loss

        value = untrained_loss(self.recipe)
        return value if math.isfinite(value) else 1e6

    def fingerprint(self) -> str:
        return repr((self.recipe.hash, self.steps, self.batch_size))

    def __call__(self, parametrization: str, width: int, seed: int, hps: dict[str, float]) -> Any:
        from ._build import make_task, run_training

        rec = dataclasses.replace(
            self.recipe, parametrization=dataclasses.replace(self.recipe.parametrization, name=parametrization))
        values = rec.values(dict(hps))
        if rec.task.train_fn is not None:
            return self._custom(rec, {**values, "parametrization": parametrization}, width, seed)
        if self._task is None:
            self._task = make_task(rec)
        return run_training(rec, values, width, seed=seed, steps=self.steps, batch_size=self.batch_size,
                            task=self._task)

    def _custom(self, rec: Any, values: dict[str, Any], width: int, seed: int) -> TrainResult:
        import time

        from ._objective import Reporter, call_train_fn
        from .recipe import import_object

        fn = import_object(rec.task.train_fn, "task.train_fn")
        reporter = Reporter(guard=DivergenceGuard(factor=rec.train.divergence_factor))
        start = time.perf_counter()
        out = TrainResult()
        try:
            out.val_loss = call_train_fn(fn, values, width=width, seed=seed, report=reporter)
        except TrainingDiverged as exc:
            out.diverged, out.reason = True, str(exc)
        out.seconds, out.steps = time.perf_counter() - start, reporter.steps
        if not math.isfinite(out.val_loss):
            out.diverged, out.val_loss = True, math.inf
        return out
