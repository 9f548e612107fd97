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

from ..errors import CoordCheckError
from ..parametrization import Parametrization
from ..recipe import RunSpec
from ..training import make_task
from ._analysis import analyse
from ._builders import make_builder, optimizer_class_of, optimizer_kwargs_for, stream_modules
from ._eps import eps_capped
from ._probe import as_args, check_start, probe, stats, to_device
from ._result import CoordCheckResult

__all__ = ["coord_check", "DEFAULT_TOL_GROW", "DEFAULT_TOL_VANISH"]

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
    lr: float = 1e-2,
    optimizer: str | type[torch.optim.Optimizer] = "adam",
    optimizer_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    example_input: Any = None, probe_input: Any = None,
    tol_grow: float = DEFAULT_TOL_GROW,
    tol_vanish: float = DEFAULT_TOL_VANISH,
    device: str | torch.device = "cpu",
    depths: Sequence[int] | None = None,
    base_depth: int | None = None,
    **parametrize_options: Any,
) -> CoordCheckResult:
    """Train ``factory`` briefly at several widths and check that module outputs stay Θ(1).

    Args:
        factory: ``width -> nn.Module`` (as for :func:`hptransfer.parametrize`) or a :class:`~hptransfer.recipe.RunSpec`
            (``recipe.at(width)``), built by :func:`hptransfer.training.build` at every width with the spec's
            parametrization, optimizer and LR (``lr``, ``optimizer``, ``parametrization`` here are then ignored).
        widths: at least two distinct positive widths, e.g. ``(64, 128, 256, 512)``.
        base_width: base width of the parametrization (factory form). Default ``min(widths)``.
        parametrization: ``"mup"`` (default), ``"sp"`` or any registered name.
        task: a task (or its name) giving ``batch(step, batch_size, seed=)``, ``loss`` and
            ``example_input``; or give ``batch_fn`` (``step -> (input, target)``, the same batches
            for every seed) and ``loss_fn`` (``(output, target) -> loss``), which override it.
        steps: optimizer steps (>= 1); statistics at steps 0..steps. Default 4.
        seeds: init seeds; statistics are averaged over them before fitting. Default ``(0, 1, 2)``.
        lr: base LR (at ``base_width``). Default 1e-2: SP's width dependence shows within 4 Adam steps.
        optimizer: ``"adam"`` (default), ``"adamw"``, ``"sgd"``, ``"muon"`` or a torch optimizer class.
        optimizer_kwargs: as in your training: :func:`hptransfer.param_groups` options (``weight_decay``, ``eps``...)
            scaled per group, the rest (``betas``...) to the class. Default none (the class's defaults, no decay).
        batch_size: training and probe batch size for ``task``. Default 32.
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
    spec = factory if isinstance(factory, RunSpec) else None
    if spec is not None:
        task, lr, optimizer, parametrization = _from_spec(spec, task, parametrize_options)
    task = _resolve_task(task, batch_fn, loss_fn)
    opt_cls, opt_name = optimizer_class_of(optimizer)
    opt_kwargs = optimizer_kwargs_for(optimizer_kwargs, opt_cls, spec)
    probe_input, example_input = _inputs(task, batch_fn, batch_size, probe_input, example_input)
    device = torch.device(device)
    make = make_builder(spec, factory, task, widths, widths_l, depths=depths, base_width=base_width,
                        base_depth=base_depth, parametrization=parametrization, example_input=example_input,
                        options=parametrize_options, opt_cls=opt_cls, opt_name=opt_name, lr=float(lr), device=device,
                        opt_kwargs=opt_kwargs)
    batches = (lambda step, seed: batch_fn(step)) if batch_fn is not None else (
        lambda step, seed: task.batch(step, batch_size, seed=seed))  # type: ignore[union-attr]
    records, order, capped = _measure(make, batches, loss_fn if loss_fn is not None else task.loss,  # type: ignore
                                      widths_l, seeds_l, steps, probe_input, device)
    order = order if depths is None else stream_modules(order)
    name = str(getattr(parametrization, "name", parametrization))
    return analyse(records, order, widths_l, seeds_l, steps, float(tol_grow), float(tol_vanish),
                    parametrization=name, optimizer=opt_name, lr=float(lr), capped=capped)


def _inputs(task: Any, batch_fn: Any, batch_size: int, probe_input: Any, example_input: Any) -> tuple[Any, Any]:
    """The probe (default: the task's ``val`` batch 0, or ``batch_fn(0)``) and the example input for the
    attention trace (default: ``task.example_input(2)``, else the probe)."""
    if probe_input is None:
        probe_input = batch_fn(0)[0] if batch_fn is not None else task.batch(0, batch_size, split="val", seed=0)[0]
    if example_input is None:
        example_input = task.example_input(2) if task is not None else probe_input
    return probe_input, example_input


def _from_spec(spec: RunSpec, task: Any, parametrize_options: dict[str, Any]) -> tuple[Any, float, str, str]:
    """``(task, lr, optimizer, parametrization)`` of a run spec (its settings replace the arguments')."""
    if parametrize_options:
        raise CoordCheckError(f"parametrize options {sorted(parametrize_options)} cannot be combined with a run "
                              "spec. Fix: set them in the spec (spec.replace(...)).")
    task = make_task(spec.task) if task is None and spec.task.name is not None else task
    return task, spec.optimizer.lr, spec.optimizer.name, spec.parametrization.name


def _resolve_task(task: Any, batch_fn: Any, loss_fn: Any) -> Any:
    """A task object from a name; a clear error when neither a task nor batch_fn/loss_fn is given."""
    if isinstance(task, str):
        from ..zoo.tasks import get_task  # local: tasks pulls in data code the core does not need

        task = get_task(task)
    if batch_fn is None and task is None:
        raise CoordCheckError("coord_check needs training data. Fix: pass task=... or batch_fn= and loss_fn=.")
    if loss_fn is None and task is None:
        raise CoordCheckError("coord_check needs a loss. Fix: pass loss_fn=(output, target) -> loss, or task=.")
    return task


def _check_numbers(widths: Any, seeds: Any, steps: Any, batch_size: Any, tol_grow: Any, tol_vanish: Any
                   ) -> tuple[list[float], list[int]]:
    """Validate the numeric arguments of :func:`coord_check`; the sorted widths and the seeds."""
    widths_l, seeds_l = _check_widths(widths), _check_seeds(seeds)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise CoordCheckError(f"steps={steps!r} must be an integer >= 1. Fix: pass steps=4 (the default).")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CoordCheckError(f"batch_size={batch_size!r} must be an integer >= 1.")
    for name, tol in (("tol_grow", tol_grow), ("tol_vanish", tol_vanish)):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
            raise CoordCheckError(f"{name}={tol!r} must be a positive number (a log2-log2 slope).")
    return widths_l, seeds_l


def _measure(
    make: Callable[[float, int], tuple[nn.Module, torch.optim.Optimizer]],
    batches: Callable[[int, int], tuple[Any, Any]],
    loss: Callable[[Any, Any], Tensor],
    widths: list[float],
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


def _check_widths(widths: Any) -> list[float]:
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
    return [int(w) if w.is_integer() else w for w in ws]


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise CoordCheckError(f"seeds={seeds!r} is not a list of integers. Fix: pass e.g. seeds=(0, 1, 2).") from None
    if not out:
        raise CoordCheckError("seeds is empty. Fix: pass at least one seed, e.g. seeds=(0, 1, 2).")
    return out
