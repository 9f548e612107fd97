"""Recipe + hyperparameter values + width -> (model, optimizer, task, schedule): one training run.

Shared by tuning, transfer, the target run and verification sweeps (``check``), so that every
run of a recipe is built the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .optim import param_groups
from .parametrize import parametrize
from .recipe import Recipe, import_object
from .train import DivergenceGuard, Schedule, TrainResult, train

__all__ = ["Built", "make_factory", "make_task", "build", "build_optimizer", "run_training", "model_cost",
           "OPTIMIZER_CLASSES", "torch_threads"]

#: Recipe optimizer names -> torch classes.
OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD,
}


class _WidthFactory:
    """A picklable ``width -> nn.Module`` calling ``fn(**kwargs, width_arg=width)``."""

    def __init__(self, fn: Callable[..., nn.Module], kwargs: dict[str, Any], width_arg: str):
        self.fn, self.kwargs, self.width_arg = fn, dict(kwargs), width_arg

    def __call__(self, width: int) -> nn.Module:
        return self.fn(**self.kwargs, **{self.width_arg: width})


def make_task(recipe: Recipe) -> Any:
    """The recipe's built-in task instance (``None`` for a custom ``task.train_fn``)."""
    if recipe.task.name is None:
        return None
    from .tasks import get_task

    return get_task(recipe.task.name, **recipe.task.kwargs)


def make_factory(recipe: Recipe, task: Any = None) -> Callable[[int], nn.Module]:
    """``width -> nn.Module`` for the recipe's model. Built-in models get the task's sizes as defaults."""
    m = recipe.model
    if m.factory is not None:
        return _WidthFactory(import_object(m.factory, "model.factory"), m.kwargs, m.width_arg)
    from .models import get_model

    defaults = task.model_kwargs() if task is not None else {}
    return _WidthFactory(get_model(m.name), {**defaults, **m.kwargs}, m.width_arg)


@dataclass
class Built:
    """Everything one training run needs. ``values`` are the full HP values used."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    task: Any
    schedule: Schedule
    values: dict[str, Any]
    width: int


def parametrize_options(recipe: Recipe, values: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :func:`hptransfer.parametrize` from the recipe and HP values."""
    p = recipe.parametrization
    return {
        "base_width": recipe.base_width, "parametrization": p.name,
        "output_mult": float(values.get("output_mult") or 1.0), "attn_mult": float(values.get("attn_mult") or 1.0),
        "base_std": None if values.get("init_std") is None else float(values["init_std"]),
        "zero_readout": p.zero_readout, "zero_query": p.zero_query,
    }


def build_optimizer(recipe: Recipe, model: nn.Module, values: dict[str, Any]) -> torch.optim.Optimizer:
    """The recipe's optimizer over μP parameter groups for ``model`` with ``values``."""
    o = recipe.optimizer
    groups = param_groups(model, lr=float(values["lr"]), weight_decay=float(values.get("weight_decay") or 0.0),
                          optimizer=o.name, weight_decay_mode=o.weight_decay_mode, decay=o.decay)
    cls = OPTIMIZER_CLASSES[o.name]
    if o.name == "sgd":
        return cls(groups, lr=float(values["lr"]), momentum=float(values.get("momentum") or 0.0))
    return cls(groups, lr=float(values["lr"]), betas=(float(values["beta1"]), float(values["beta2"])),
               eps=float(values["eps"]))


def build(recipe: Recipe, values: dict[str, Any], width: int, *, seed: int = 0, task: Any = None) -> Built:
    """Build model (seeded init), optimizer, task and schedule for one run at ``width``.

    ``values`` are full HP values (use ``recipe.values(sampled)``). The model init is drawn with
    ``torch.manual_seed(seed)``, so the same seed gives the same init.
    """
    task = task if task is not None else make_task(recipe)
    factory = make_factory(recipe, task)
    torch.manual_seed(seed)
    example = task.example_input() if task is not None else None
    model = parametrize(factory, width=width, example_input=example, **parametrize_options(recipe, values))
    optimizer = build_optimizer(recipe, model, values)
    return Built(model, optimizer, task, make_schedule(recipe, values), values, width)


def make_schedule(recipe: Recipe, values: dict[str, Any]) -> Schedule:
    """The LR schedule with the (possibly searched) warmup and min_lr_frac."""
    return Schedule(warmup=float(values.get("warmup") or 0.0), decay=recipe.schedule.decay,
                    min_lr_frac=float(values.get("min_lr_frac", recipe.schedule.min_lr_frac)))


def run_training(
    recipe: Recipe,
    values: dict[str, Any],
    width: int,
    *,
    seed: int = 0,
    steps: int | None = None,
    batch_size: int | None = None,
    report: Callable[[int, float], None] | None = None,
    progress: Callable[[int, float], None] | None = None,
    eval_every: int = 0,
    task: Any = None,
) -> TrainResult:
    """One built-in training run of the recipe at ``width``; divergence is recorded, never raised.

    ``steps``/``batch_size`` default to ``recipe.train``. ``report(step, loss)`` is called every
    step (the tuner's pruning hook).
    """
    b = build(recipe, values, width, seed=seed, task=task)
    guard = DivergenceGuard(factor=recipe.train.divergence_factor, floor=float(b.task.init_loss_bound))
    return train(b.model, b.optimizer, b.task, steps=steps or recipe.train.steps,
                 batch_size=batch_size or recipe.train.batch_size, seed=seed, schedule=b.schedule, guard=guard,
                 report=report, progress=progress, eval_every=eval_every, grad_clip=recipe.optimizer.grad_clip)


def model_cost(recipe: Recipe, width: int, *, steps: int | None = None, batch_size: int | None = None) -> dict:
    """Training cost of one run at ``width``: parameters, tokens and FLOPs (6 x params x tokens).

    Tokens per example are the task's sequence length (1 for classification). Returns
    ``{"params", "tokens", "flops", "param_steps"}``; built on the meta device (no memory).
    """
    task = make_task(recipe)
    factory = make_factory(recipe, task)
    with torch.device("meta"):
        model = factory(width)
    n = sum(p.numel() for p in model.parameters())
    steps = steps or recipe.train.steps
    batch = batch_size or recipe.train.batch_size
    per_example = int(getattr(task, "block_size", 1)) if task is not None else 1
    tokens = steps * batch * per_example
    return {"params": n, "tokens": tokens, "flops": 6.0 * n * tokens, "param_steps": n * steps}


def untrained_loss(recipe: Recipe) -> float:
    """The loss of an untrained (uniform) predictor: the diverged-trial penalty. ``inf`` if unknown."""
    task = make_task(recipe)
    return float(getattr(task, "init_loss_bound", math.inf)) if task is not None else math.inf


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: leave it), then restore.

    Why: on a shared 2-core machine, OpenMP threads spin-waiting against other processes made the
    quickstart take 8 min with 2 threads and 14 s with 1 (measured); the models here are too small
    to gain from more.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
