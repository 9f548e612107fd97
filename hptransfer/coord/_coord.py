"""Coordinate check: do activations and their updates stay width-independent?

Under a correct μP every module's output coordinates -- and how far they move during
training -- are Θ(1) in width (Tensor Programs V, Yang et al. 2022, arXiv:2203.03466,
Sec. 6 / App. D.1; the same check the ``mup`` package plots). :func:`coord_check` builds the
model at several widths and seeds, trains a few optimizer steps with the μP learning rates
from :func:`hptransfer.param_groups`, and after every step runs one fixed *probe* batch
through the model with forward hooks on every module, recording two statistics per module:

* ``act``: mean |h| over all output entries (the L1 size per coordinate, as TP5's plots);
* ``update``: mean |h_t - h_0| (how far the output moved since init on the same probe).

The plain ``act`` check misses *vanishing* updates: when an update is tiny, h_t ≈ h_0 and
``act`` looks width-stable although the layer does not learn (e.g. a hidden layer whose Adam
LR is divided by the width multiplier twice). ``update`` catches it.

For each module and step the slope of ``log2(mean over seeds of stat)`` against
``log2(width)`` is fitted by least squares. The check fails when

* an ``act`` slope exceeds ``tol_grow`` at any step (growth is never right; step 0 is
  included so that a width-dependent init is caught too; shrinking is allowed, since the μP
  readout output at init legitimately goes like ``width^-1/2``), or
* an ``update`` slope at a step >= 1 exceeds ``tol_grow`` or falls below ``-tol_vanish``.
  For *fixed-size* outputs (same number of entries at every width: readout logits, the model
  output) the floor is ``-(tol_vanish + 0.5)``: their update contains the init weights acting
  on the moved features, ``W_0 Δx / width``, which under μP shrinks like ``width^-1/2`` and
  can dominate for many steps (tied embeddings: still -0.39 after 8 steps), while the
  readout's own Θ(1) update only overtakes it as it accumulates.

Attention: the probe also records, per attention module, the softmax scale it actually used
times the head dimension (``"<module>[attn scale x d]"``, a scalar; SDPA calls and attention
written by hand). With a fixed head count the head dimension grows with width; μP's 1/d
attention (TP5, arXiv:2203.03466, Sec. 4) keeps the entry constant (slope 0), attention left at
1/sqrt(d) makes it grow like sqrt(d) (slope +0.5 per width doubling), which the growth rule
catches. The entry does not move in training, so only its activation slope is judged. The
attention *logits* themselves are no good statistic over a few steps: their μP init term
shrinks like 1/sqrt(d) while the update term builds up, so the slope depends on the step and
the LR (measured: +0.6 on a μP Hugging Face GPT-2 at lr 1e-2, -0.3 at 3e-3).

Default tolerances, measured with ``scripts/coord_thresholds.py`` (Adam, lr 1e-2, 4 steps,
seeds 0-2; full table and reasoning in ``docs/coord_check.md``). Slopes per doubling of width;
"μP update" is the most negative update slope of width-sized / fixed-size modules; "SP weakest"
is, over the modules SP fails on, the smallest of their worst slopes:

=====================  =======  ==============  =========  ==========================
model (widths)         μP grow  μP update       SP max     SP weakest failing module
=====================  =======  ==============  =========  ==========================
MLP depth 3 (64-1024)  +0.04    -0.02 / -0.03   +1.38      +0.91 ``act#2``
GPT 2 layers (32-256)  +0.09    -0.24 / -0.30   +1.58      +0.52 ``ln_f``
GPT tied (32-256)      +0.15    -0.22 / -0.48   +1.35      +0.57 ``ln_f``
CNN (16-256)           +0.03    -0.01 / -0.10   +1.08      +0.60 ``(model)``
=====================  =======  ==============  =========  ==========================

A μP variant with the hidden LR divided by width once too often (vanishing updates) gives
update slopes of -0.43 (MLP), -1.00 (GPT) and -0.75 (CNN); its activation slopes pass. At the
smaller sizes the tests use (widths 16-256, 2-3 steps, 2 seeds) μP reaches +0.27 growth
(GLU/RMSNorm GPT, ``o_proj``) and -0.25 / -0.49 update.
Hence ``tol_grow = 0.35`` (above μP's +0.27 worst, below SP's weakest +0.52) and
``tol_vanish = 0.35`` (below μP's -0.25 worst, above the bug's -0.43).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ..errors import BREAKING, CoordCheckError, RecipeError
from ..parametrization import Parametrization
from ..recipe import RunSpec, parse_recipe
from ..recipe._kwargs import optimizer_fields, parametrization_fields
from ..training._build import make_task
from ._analysis import analyse_coords
from ._builders import FnTask, along_depth, builder, stream_modules
from ._eps import eps_capped
from ._probe import as_args, check_start, probe, stats, to_device
from ._result import CoordCheckResult

__all__ = ["coord_check", "coord_spec", "DEFAULT_TOL_GROW", "DEFAULT_TOL_VANISH", "COORD_LR", "COORD_OPTIMIZER"]

#: Largest allowed log2-log2 slope of a statistic against width before it counts as growing.
#: Measured: μP worst +0.27 (a GLU GPT at 32-128), SP's weakest failing module +0.52 (module docstring).
DEFAULT_TOL_GROW: float = 0.35
#: Largest allowed *negative* slope of the update statistic (steps >= 1) before it counts as
#: vanishing. Measured: μP worst -0.25 (attention k_proj), a hidden-LR-too-small bug -0.43 to -1.0.
DEFAULT_TOL_VANISH: float = 0.35


class _TaskLike(Protocol):
    """What :func:`coord_check` needs from a task (``hptransfer.tasks.Task`` satisfies it)."""

    def batch(self, step: int, batch_size: int, *, split: str = ..., seed: int = ...) -> tuple[Any, Any]: ...

    def loss(self, output: Tensor, target: Tensor) -> Tensor: ...

    def example_input(self, batch_size: int = ...) -> Any: ...


#: The factory form's LR and optimizer: those the tolerances were measured at (Adam, lr 1e-2, 4 steps;
#: SP's width dependence shows within 4 steps there). A run spec (a recipe's) keeps its own.
COORD_LR: float = 1e-2
COORD_OPTIMIZER: str = "adam"


def coord_check(
    factory: Callable[..., nn.Module] | RunSpec,
    *,
    widths: Sequence[float],
    base_width: float | None = None,
    parametrization: str | Parametrization = "mup",
    task: _TaskLike | str | None = None,
    loss_fn: Callable[[Any, Any], Tensor] | None = None,
    batch_fn: Callable[[int], tuple[Any, Any]] | None = None,
    steps: int = 4,
    seeds: Iterable[int] = (0, 1, 2),
    lr: float = COORD_LR,
    optimizer: str | type[torch.optim.Optimizer] = COORD_OPTIMIZER,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    example_input: Any = None, probe_input: Any = None,
    tol_grow: float = DEFAULT_TOL_GROW,
    tol_vanish: float = DEFAULT_TOL_VANISH,
    device: str | torch.device = "cpu",
    depths: Sequence[int] | None = None,
    base_depth: int | None = None,
    **parametrize_options: Any,
) -> CoordCheckResult:
    """Train ``factory`` briefly at several widths and check that module outputs stay Θ(1).

    Both doors run one implementation: a factory and its options become a recipe's run spec
    (:func:`coord_spec`), built at every width by :func:`hptransfer.training.build`.

    Args:
        factory: ``width -> nn.Module`` (as for :func:`hptransfer.parametrize`) or a :class:`~hptransfer.recipe.RunSpec`
            (``recipe.at(width)``), whose parametrization, optimizer and LR then replace the arguments here.
        widths: at least two distinct positive integer widths, e.g. ``(64, 128, 256, 512)``.
        base_width: base width of the parametrization (factory form). Default ``min(widths)``.
        parametrization: ``"mup"`` (default), ``"sp"`` or any registered name.
        task: a task (or its name) giving ``batch(step, batch_size, seed=)``, ``loss`` and
            ``example_input``; or give ``batch_fn`` (``step -> (input, target)``, the same batches
            for every seed) and ``loss_fn`` (``(output, target) -> loss``), which override it.
        steps: optimizer steps (>= 1); statistics at steps 0..steps. Default 4.
        seeds: init seeds; statistics are averaged over them before fitting. Default ``(0, 1, 2)``.
        lr: base LR (at ``base_width``). Default :data:`COORD_LR` (1e-2): SP's width dependence shows
            within 4 Adam steps.
        optimizer: ``"adam"`` (default, :data:`COORD_OPTIMIZER`), ``"adamw"``, ``"sgd"``, ``"muon"`` or a
            torch optimizer class.
        optimizer_kwargs: as in your training (``weight_decay``, ``eps``, ``betas``...): the recipe's
            ``optimizer`` fields (:func:`hptransfer.recipe._kwargs.optimizer_fields`), scaled per group as
            :func:`hptransfer.param_groups` does. Default none (the recipe defaults, no decay).
        batch_size: training and probe batch size for ``task``. Default: the spec's, else 32.
        example_input, probe_input: for the attention trace (default ``task.example_input(2)``, else the
            probe) and the fixed measurement input (default the task's ``val`` batch 0).
        tol_grow, tol_vanish: largest growing slope / largest negative update slope (log2 stat
            per width doubling). Defaults :data:`DEFAULT_TOL_GROW`, :data:`DEFAULT_TOL_VANISH`.
        device: where to build and train. Default CPU.
        depths, base_depth: sweep depth at one width (``factory(width, depth)``; base default ``min(depths)``);
            only modules outside the block stack are fitted (why: ``coord/_builders.py``).
        **parametrize_options: passed to :func:`hptransfer.parametrize` (factory form).

    Returns:
        A :class:`CoordCheckResult`; ``result.passed`` is the verdict.

    Raises:
        CoordCheckError: bad widths, steps, seeds, tolerances or a missing data source.
        HPTransferError: from ``parametrize``/``param_groups`` (bad factory, options, LR).
    """
    points = widths if depths is None else depths  # along depth the fitted points are the depths
    widths_l, seeds_l = _check_numbers(points, seeds, steps, batch_size, tol_grow, tol_vanish)
    if isinstance(factory, RunSpec):
        _check_spec(factory, {**parametrize_options, **(optimizer_kwargs or {})})
        spec, task = factory, _resolve_task(make_task(factory.task) if task is None else task, batch_fn, loss_fn)
    else:
        task = _resolve_task(task, batch_fn, loss_fn)
        spec = coord_spec(factory, task, widths=widths if depths is None else [_one_width(widths)],
                          base_width=base_width, parametrization=parametrization, lr=lr, optimizer=optimizer,
                          optimizer_kwargs=optimizer_kwargs, batch_size=batch_size, depths=depths,
                          base_depth=base_depth, parametrize_options=parametrize_options)
    return _check(spec, task, widths, widths_l, seeds_l, depths, base_depth, steps=steps, batch_size=batch_size,
                  probe_input=probe_input, example_input=example_input, tol_grow=tol_grow, tol_vanish=tol_vanish,
                  device=device)


def _check(spec: RunSpec, task: FnTask, widths: Sequence[float], points: list[int], seeds: list[int],
           depths: Sequence[int] | None, base_depth: int | None, *, steps: int, batch_size: int | None,
           probe_input: Any, example_input: Any, tol_grow: float, tol_vanish: float,
           device: str | torch.device) -> CoordCheckResult:
    """The one implementation: build ``spec`` at every point (width, or depth) and seed, train, fit, judge."""
    batch_size = int(batch_size or spec.train.batch_size or 32)
    probe_input, example_input = _inputs(task, batch_size, probe_input, example_input)
    before = len(BREAKING)
    device = torch.device(device)
    make = builder(spec, task, example_input, device, depths=points if depths is not None else None,
                   width=_one_width(widths) if depths is not None else None, base_depth=base_depth)
    records, order, capped = _measure(make, lambda step, seed: task.batch(step, batch_size, seed=seed), task.loss,
                                      points, seeds, steps, probe_input, device)
    order = order if depths is None else stream_modules(order)
    assert spec.parametrization is not None and spec.optimizer is not None  # build() refused a spec without
    p, o = spec.parametrization.name, spec.optimizer.name
    result = analyse_coords(records, order, list[float](points), seeds, steps, float(tol_grow), float(tol_vanish),
                            parametrization=str(getattr(p, "name", p)), optimizer=str(getattr(o, "__name__", o)),
                            lr=float(spec.optimizer.lr), capped=capped)
    warned = list(dict.fromkeys(BREAKING[before:]))  # said while building these models: transfer will not hold
    if warned:
        result.extra["warnings"], result.passed = warned, False
    return result


def coord_spec(factory: Callable[..., nn.Module], task: Any, *, widths: Sequence[float], base_width: float | None,
               parametrization: str | Parametrization, lr: float, optimizer: Any,
               optimizer_kwargs: Mapping[str, Any] | None, batch_size: int | None, depths: Sequence[int] | None,
               base_depth: int | None, parametrize_options: Mapping[str, Any]) -> RunSpec:
    """The run spec the factory form stands for: a recipe with ``factory`` as ``model.factory`` and the
    check's data (``task``, an object) as ``task.name``."""
    ws = sorted(int(w) for w in widths)
    data: dict[str, Any] = {
        "name": "coord-check", "model": {"factory": factory}, "task": {"name": task},
        "parametrization": {"name": parametrization, "base_width": int(base_width or ws[0]),
                            **parametrization_fields(parametrize_options)},
        "optimizer": {**optimizer_fields(optimizer_kwargs, lr=lr), "name": optimizer, "lr": lr},
        "train": {"batch_size": batch_size or 32, "steps": 1}, "widths": {"proxy": ws[:1], "target": ws[-1:]},
    }
    if depths is not None:
        data["depths"] = {"proxy": min(depths), "target": max(depths)}
        data["parametrization"]["base_depth"] = int(base_depth or min(depths))
    try:
        recipe = parse_recipe(data, source="coord_check(...)")
    except RecipeError as exc:  # the recipe's field paths, raised as the coordinate check's own error
        raise CoordCheckError(f"coord_check(...): {exc}") from None
    return recipe.at(ws[0], depth=min(depths) if depths else None)


def _check_spec(spec: RunSpec, options: dict[str, Any]) -> None:
    """A run spec brings its own options, and must have the optimizer and parametrization the check steps."""
    if options:
        raise CoordCheckError(f"options {sorted(options)} cannot be combined with a run spec. Fix: set them in the "
                              "spec (spec.replace(...)).")
    if spec.optimizer is None or spec.parametrization is None:
        raise CoordCheckError("the run spec has no optimizer or parametrization (its recipe leaves them to a "
                              "train_fn), which the coordinate check needs to step the model. Fix: add "
                              "`optimizer:` and `parametrization:` sections, or pass a factory.")


def _one_width(widths: Sequence[float]) -> int:
    """The one width of a check along depth."""
    return along_depth(widths, [1])[0]


def _inputs(task: Any, batch_size: int, probe_input: Any, example_input: Any) -> tuple[Any, Any]:
    """The probe (default: the task's ``val`` batch 0) and the example input for the attention trace
    (default: ``task.example_input(2)``, else the probe)."""
    if probe_input is None:
        probe_input = task.batch(0, batch_size, split="val", seed=0)[0]
    if example_input is None:
        example_input = task.example_input(2) if task.has_example else probe_input
    return probe_input, example_input


def _resolve_task(task: Any, batch_fn: Any, loss_fn: Any) -> FnTask:
    """The check's data and loss: a task (object or name), with ``batch_fn`` / ``loss_fn`` in its place where
    given; a clear error when neither is there."""
    if isinstance(task, str):
        from ..zoo.tasks import get_task  # local: tasks pulls in data code the core does not need

        task = get_task(task)
    if batch_fn is None and task is None:
        raise CoordCheckError("coord_check needs training data. Fix: pass task=... or batch_fn= and loss_fn=.")
    if loss_fn is None and task is None:
        raise CoordCheckError("coord_check needs a loss. Fix: pass loss_fn=(output, target) -> loss, or task=.")
    return FnTask(task, batch_fn, loss_fn)


def _check_numbers(widths: Any, seeds: Any, steps: Any, batch_size: Any, tol_grow: Any, tol_vanish: Any
                   ) -> tuple[list[int], list[int]]:
    """Validate the numeric arguments of :func:`coord_check`; the sorted widths and the seeds."""
    widths_l, seeds_l = _check_widths(widths), _check_seeds(seeds)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise CoordCheckError(f"steps={steps!r} must be an integer >= 1. Fix: pass steps=4 (the default).")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise CoordCheckError(f"batch_size={batch_size!r} must be an integer >= 1.")
    for name, tol in (("tol_grow", tol_grow), ("tol_vanish", tol_vanish)):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
            raise CoordCheckError(f"{name}={tol!r} must be a positive number (a log2-log2 slope).")
    return widths_l, seeds_l


def _measure(
    make: Callable[[int, int], tuple[nn.Module, torch.optim.Optimizer]],
    batches: Callable[[int, int], tuple[Any, Any]],
    loss: Callable[[Any, Any], Tensor],
    widths: list[int],
    seeds: list[int],
    steps: int,
    probe_input: Any,
    device: torch.device,
) -> tuple[list[dict[str, Any]], list[str], dict[str, dict[str, float]]]:
    """Train each (width, seed) for ``steps`` steps; record every module's output statistics on the
    probe, and which parameters' gradients Adam's epsilon swamps at the widest width (``_eps``)."""
    records: list[dict[str, Any]] = []  # one per (width, seed, step, module call); slopes are fitted later
    order: list[str] = []
    capped: dict[str, dict[str, float]] = {}
    masks: dict[str, float] = {}
    for width in widths:
        for seed in seeds:
            model, opt = make(width, seed)
            model.train()
            h0: dict[str, Tensor] = {}
            for step in range(steps + 1):
                outs = probe(model, to_device(probe_input, device))
                order.extend(n for n in outs if n not in order)
                if step == 0:
                    h0 = outs
                    if width == widths[0]:
                        check_start(outs, width, probe_input)
                for name, h in outs.items():
                    act, upd, frac = stats(h, h0.get(name) if step else None, masks.get(name))
                    if width == widths[0] and step == 0:
                        masks.setdefault(name, frac)  # a mask's share of ±inf entries, kept at every width
                    records.append({"width": width, "seed": seed, "step": step, "module": name, "numel": h.numel(),
                                    "act": act, "update": upd if step else 0.0})
                if step == steps:
                    break
                x, y = batches(step, seed)
                opt.zero_grad(set_to_none=True)
                loss(model(*as_args(to_device(x, device))), to_device(y, device)).backward()
                if width == widths[-1] and seed == seeds[0]:  # at any step: the first one is often the one
                    for n, v in eps_capped(model, opt).items():
                        if n not in capped or v["median_grad"] < capped[n]["median_grad"]:
                            capped[n] = v
                opt.step()
            del model, opt, h0
    return records, order, capped


def _check_widths(widths: Any) -> list[int]:
    try:
        ws = sorted({float(w) for w in widths})
    except (TypeError, ValueError):
        raise CoordCheckError(
            f"widths={widths!r} is not a list of numbers. Fix: pass e.g. widths=(64, 128, 256, 512)."
        ) from None
    if len(ws) < 2 or not all(math.isfinite(w) and w > 0 for w in ws):
        raise CoordCheckError(
            f"widths={widths!r} must hold at least two distinct positive widths to fit a slope. "
            "Fix: pass e.g. widths=(64, 128, 256, 512)."
        )
    if not all(w.is_integer() for w in ws):
        raise CoordCheckError(f"widths={widths!r}: a width is a whole number (a model size). Fix: pass integers.")
    return [int(w) for w in ws]


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise CoordCheckError(f"seeds={seeds!r} is not a list of integers. Fix: pass e.g. seeds=(0, 1, 2).") from None
    if not out:
        raise CoordCheckError("seeds is empty. Fix: pass at least one seed, e.g. seeds=(0, 1, 2).")
    return out
