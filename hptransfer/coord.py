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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ._coord_probe import ROOT_NAME, _as_args, _probe, _to
from .errors import CoordCheckError
from .optim import param_groups
from .parametrizations import Parametrization
from .parametrize import parametrize

__all__ = ["coord_check", "CoordCheckResult", "DEFAULT_TOL_GROW", "DEFAULT_TOL_VANISH", "ROOT_NAME"]

#: Largest allowed log2-log2 slope of a statistic against width before it counts as growing.
#: Measured: μP worst +0.27 (a GLU GPT at 32-128), SP's weakest failing module +0.52 (module docstring).
DEFAULT_TOL_GROW: float = 0.35
#: Largest allowed *negative* slope of the update statistic (steps >= 1) before it counts as
#: vanishing. Measured: μP worst -0.25 (attention k_proj), a hidden-LR-too-small bug -0.43 to -1.0.
DEFAULT_TOL_VANISH: float = 0.35


_ACT, _UPD = "activation", "update"

#: Slope of the init-weight term of a fixed-size output under μP (width^-1/2): the extra
#: shrinkage allowed for the update of readout-like modules (see the module docstring).
_READOUT_DECAY = 0.5


class _TaskLike(Protocol):
    """What :func:`coord_check` needs from a task (``hptransfer.tasks.Task`` satisfies it)."""

    def batch(self, step: int, batch_size: int, *, split: str = ..., seed: int = ...) -> tuple[Any, Any]: ...

    def loss(self, output: Tensor, target: Tensor) -> Tensor: ...

    def example_input(self, batch_size: int = ...) -> Any: ...


@dataclass
class CoordCheckResult:
    """The outcome of :func:`coord_check`.

    Attributes:
        passed: True iff nothing is in :attr:`failing`.
        widths: the widths checked, ascending.
        steps: recorded step indices ``[0, 1, ..., n_steps]``; step ``t`` is measured after
            ``t`` optimizer steps (0 = at init).
        modules: module names in the order they first ran (``"(model)"`` is the root; a module
            called several times per forward gets ``name#2``, ``name#3``, ... for later calls).
        slopes: module -> per-step slope of log2(mean |h|) vs log2(width) (NaN when the
            statistic is exactly 0 at every width, +inf when it is non-finite somewhere).
        update_slopes: module -> per-step slope of log2(mean |h_t - h_0|); index 0 is NaN.
        stats: raw records, one dict per (width, seed, step, module) with keys ``width``,
            ``seed``, ``step``, ``module``, ``numel`` (entries in the output), ``act`` and
            ``update`` (0.0 at step 0).
        failing: ``(module, step, kind, slope)``, worst first (largest excess over the
            tolerance); ``kind`` is ``"activation"`` or ``"update"``.
        tolerances: ``{"grow": ..., "vanish": ...}`` used for the verdict.
        fixed_size: modules whose output has the same size at every width (readout logits,
            the model output); their update may shrink by up to ``0.5 + tolerances["vanish"]``.
        parametrization, optimizer, lr: what was checked, for reports.
    """

    passed: bool
    widths: list[float]
    steps: list[int]
    modules: list[str]
    slopes: dict[str, list[float]]
    update_slopes: dict[str, list[float]]
    stats: list[dict[str, Any]]
    failing: list[tuple[str, int, str, float]]
    tolerances: dict[str, float]
    fixed_size: list[str] = field(default_factory=list)
    parametrization: str = "mup"
    optimizer: str = "adam"
    lr: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- reporting ------------------------------------------------------------------

    def mean_stat(self, module: str, step: int, kind: str = _ACT) -> list[float]:
        """Mean over seeds of ``kind`` (``"activation"`` or ``"update"``) per width."""
        key = "act" if kind == _ACT else "update"
        out = []
        for w in self.widths:
            vals = [r[key] for r in self.stats if r["module"] == module and r["step"] == step and r["width"] == w]
            out.append(float(np.mean(vals)) if vals else float("nan"))
        return out

    def summary(self, max_rows: int = 40) -> str:
        """A text table: verdict, tolerances, then the slopes of the last step per module
        (failing modules first, marked ``FAIL``), at most ``max_rows`` module rows."""
        verdict = "PASSED" if self.passed else f"FAILED ({len(self.failing)} module/step/kind combination(s))"
        widths = ", ".join(f"{w:g}" for w in self.widths)
        lines = [
            f"coordinate check ({self.parametrization}, {self.optimizer} lr={self.lr:g}, widths {widths}, "
            f"steps {self.steps[-1]}): {verdict}",
            f"tolerances: activation and update slopes <= {self.tolerances['grow']:g}; update slope >= "
            f"-{self.tolerances['vanish']:g} (fixed-size outputs: >= -{self.tolerances['vanish'] + _READOUT_DECAY:g})",
        ]
        worst: dict[str, tuple[int, str, float]] = {}
        for module, step, kind, slope in self.failing:
            worst.setdefault(module, (step, kind, slope))
        if self.failing:
            named = [f"{m} ({k} slope {_fmt(s)} at step {t})" for m, (t, k, s) in worst.items()]
            more = f", ... and {len(named) - 8} more" if len(named) > 8 else ""
            lines.append("failing modules (worst first): " + ", ".join(named[:8]) + more)
        last = self.steps[-1]
        lines.append(f"{'module':40s} {'act@0':>7s} {f'act@{last}':>7s} {f'upd@{last}':>7s} {'worst upd':>9s}  verdict")
        order = list(worst) + [m for m in self.modules if m not in worst]
        for module in order[:max_rows]:
            acts, upds = self.slopes[module], self.update_slopes[module]
            finite = [u for u in upds[1:] if not math.isnan(u)]
            extreme = max(finite, key=abs) if finite else float("nan")
            lines.append(
                f"{module[:40]:40s} {_fmt(acts[0]):>7s} {_fmt(acts[-1]):>7s} {_fmt(upds[-1]):>7s} "
                f"{_fmt(extreme):>9s}  {'FAIL' if module in worst else 'ok'}"
            )
        if len(order) > max_rows:
            lines.append(f"... {len(order) - max_rows} more module(s) (see to_dict())")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite slopes and statistics become ``None``)."""
        return {
            "passed": self.passed,
            "parametrization": self.parametrization,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "widths": [float(w) for w in self.widths],
            "steps": list(self.steps),
            "modules": list(self.modules),
            "tolerances": dict(self.tolerances),
            "fixed_size": list(self.fixed_size),
            "slopes": {m: [_json_num(s) for s in v] for m, v in self.slopes.items()},
            "update_slopes": {m: [_json_num(s) for s in v] for m, v in self.update_slopes.items()},
            "failing": [
                {"module": m, "step": t, "kind": k, "slope": _json_num(s)} for m, t, k, s in self.failing
            ],
            "stats": [
                {**r, "act": _json_num(r["act"]), "update": _json_num(r["update"])} for r in self.stats
            ],
            "extra": dict(self.extra),
        }

    def plot(self, path: str | Path, *, max_labels: int = 8) -> Path:
        """Write a PNG: top row mean |h| per step, bottom row mean |h_t - h_0| (steps >= 1).

        x: log2(width); y: the statistic on a log scale; one line per module. Modules that fail
        at that step (for that statistic) are drawn thick in colour and labelled with their
        slope (at most ``max_labels`` per panel); the rest are thin grey.

        Raises:
            CoordCheckError: matplotlib is not installed (``pip install hptransfer[plot]``).
        """
        from ._coord_plot import plot_result

        return plot_result(self, Path(path), max_labels=max_labels)


def coord_check(
    factory: Callable[..., nn.Module],
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
    batch_size: int = 32,
    example_input: Any = None,
    probe_input: Any = None,
    tol_grow: float = DEFAULT_TOL_GROW,
    tol_vanish: float = DEFAULT_TOL_VANISH,
    device: str | torch.device = "cpu",
    **parametrize_options: Any,
) -> CoordCheckResult:
    """Train ``factory`` briefly at several widths and check that module outputs stay Θ(1).

    Args:
        factory: ``width -> nn.Module`` as for :func:`hptransfer.parametrize`.
        widths: at least two distinct positive widths (e.g. ``(64, 128, 256, 512)``).
        base_width: base width of the parametrization; default ``min(widths)``.
        parametrization: ``"mup"`` (default), ``"sp"`` or any registered name.
        task: a task (``hptransfer.tasks.Task`` or its name) giving training batches
            ``task.batch(step, batch_size, seed=seed)``, the loss ``task.loss`` and the
            default ``example_input``. Alternatively give ``batch_fn`` and ``loss_fn``.
        loss_fn: ``(model output, target) -> scalar loss``; overrides ``task.loss``.
        batch_fn: ``step -> (input, target)``; overrides ``task.batch`` (the same batches
            are then used for every seed; seeds still vary the init).
        steps: optimizer steps to take (>= 1); statistics are recorded at steps 0..steps.
            Default 4.
        seeds: seeds for ``torch.manual_seed`` before each build; statistics are averaged
            over seeds before fitting. Default ``(0, 1, 2)``.
        lr: base learning rate (the LR at ``base_width``). Default 1e-2, large enough that
            SP's width dependence shows within 4 Adam steps.
        optimizer: ``"adam"`` (default), ``"adamw"``, ``"sgd"`` or a torch optimizer class.
            Per-parameter LRs come from :func:`hptransfer.param_groups`.
        batch_size: training and probe batch size for ``task``. Default 32.
        example_input: passed to ``parametrize`` to trace attention; default
            ``task.example_input(2)``, else the probe input.
        probe_input: the fixed input used for every measurement; default the task's
            ``val`` batch 0 (seed 0), else the input of ``batch_fn(0)``.
        tol_grow: largest allowed slope (log2 stat per doubling of width). Default
            :data:`DEFAULT_TOL_GROW`.
        tol_vanish: largest allowed negative update slope. Default :data:`DEFAULT_TOL_VANISH`.
        device: where to build and train. Default CPU.
        **parametrize_options: passed to :func:`hptransfer.parametrize` (``output_mult``,
            ``attn_mult``, ``zero_readout``, ``zero_query``, ``readout``, ``roles``, ...).

    Returns:
        A :class:`CoordCheckResult`; ``result.passed`` is the verdict.

    Raises:
        CoordCheckError: bad widths, steps, seeds, tolerances or a missing data source.
        HPTransferError: from ``parametrize``/``param_groups`` (bad factory, options, LR).
    """
    widths_l = _check_widths(widths)
    seeds_l = _check_seeds(seeds)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise CoordCheckError(f"steps={steps!r} must be an integer >= 1. Fix: pass steps=4 (the default).")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CoordCheckError(f"batch_size={batch_size!r} must be an integer >= 1.")
    for name, tol in (("tol_grow", tol_grow), ("tol_vanish", tol_vanish)):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
            raise CoordCheckError(f"{name}={tol!r} must be a positive number (a log2-log2 slope).")
    if isinstance(task, str):
        from .tasks import get_task  # local: tasks pulls in data code the core does not need

        task = get_task(task)
    opt_cls, opt_name = _optimizer_class(optimizer)
    if batch_fn is None and task is None:
        raise CoordCheckError("coord_check needs training data. Fix: pass task=... or batch_fn= and loss_fn=.")
    if loss_fn is None and task is None:
        raise CoordCheckError("coord_check needs a loss. Fix: pass loss_fn=(output, target) -> loss, or task=.")
    loss = loss_fn if loss_fn is not None else task.loss  # type: ignore[union-attr]
    if probe_input is None:
        probe_input = (batch_fn(0)[0] if batch_fn is not None
                       else task.batch(0, batch_size, split="val", seed=0)[0])  # type: ignore[union-attr]
    if example_input is None:
        example_input = task.example_input(2) if task is not None else probe_input
    base = float(base_width) if base_width is not None else widths_l[0]
    device = torch.device(device)

    # One record per (width, seed, step, module call); slopes are fitted afterwards.
    records: list[dict[str, Any]] = []
    order: list[str] = []
    for width in widths_l:
        for seed in seeds_l:
            torch.manual_seed(seed)
            model = parametrize(factory, width=width, base_width=base, parametrization=parametrization,
                                example_input=example_input, **parametrize_options).to(device)
            model.train()
            groups = param_groups(model, lr=lr, optimizer=opt_name)
            opt = opt_cls(groups, lr=lr)
            h0: dict[str, Tensor] = {}

            def batches(step: int, seed: int = seed) -> tuple[Any, Any]:
                if batch_fn is not None:
                    return batch_fn(step)
                return task.batch(step, batch_size, seed=seed)  # type: ignore[union-attr]

            for step in range(steps + 1):
                outs = _probe(model, _to(probe_input, device))
                for name in outs:
                    if name not in order:
                        order.append(name)
                if step == 0:
                    h0 = outs
                for name, h in outs.items():
                    ref = h0.get(name)
                    upd = (h - ref).abs().mean().item() if ref is not None and ref.shape == h.shape else float("nan")
                    records.append({"width": width, "seed": seed, "step": step, "module": name, "numel": h.numel(),
                                    "act": h.abs().mean().item(), "update": upd if step else 0.0})
                if step == steps:
                    break
                x, y = batches(step)
                opt.zero_grad(set_to_none=True)
                out = model(*_as_args(_to(x, device)))
                loss(out, _to(y, device)).backward()
                opt.step()
            del model, opt, h0

    return _analyse(records, order, widths_l, seeds_l, steps, float(tol_grow), float(tol_vanish),
                    parametrization=str(getattr(parametrization, "name", parametrization)), optimizer=opt_name,
                    lr=float(lr))


# ---- internals ------------------------------------------------------------------------


def _analyse(
    records: list[dict[str, Any]],
    order: list[str],
    widths: list[float],
    seeds: list[int],
    steps: int,
    tol_grow: float,
    tol_vanish: float,
    *,
    parametrization: str,
    optimizer: str,
    lr: float,
) -> CoordCheckResult:
    """Fit the slopes and decide the verdict from raw records."""
    # (module, step, width) -> list of (act, update) over seeds
    table: dict[tuple[str, int, float], list[tuple[float, float]]] = {}
    for r in records:
        table.setdefault((r["module"], r["step"], r["width"]), []).append((r["act"], r["update"]))
    # Only modules seen at every width and seed can be fitted; a model whose module set
    # changes with width has no coordinate to compare for the others.
    modules = [m for m in order if all(len(table.get((m, 0, w), ())) == len(seeds) for w in widths)]
    # Fixed-size outputs (readout logits, the model output): same numel at every width.
    sizes: dict[str, set[int]] = {}
    for r in records:
        sizes.setdefault(r["module"], set()).add(r["numel"])
    fixed = [m for m in modules if len(sizes[m]) == 1]
    x = np.log2(np.asarray(widths, dtype=float))
    slopes: dict[str, list[float]] = {}
    upd_slopes: dict[str, list[float]] = {}
    failing: list[tuple[float, tuple[str, int, str, float]]] = []  # (excess over tolerance, entry)
    for m in modules:
        slopes[m], upd_slopes[m] = [], []
        for t in range(steps + 1):
            acts = [float(np.mean([a for a, _ in table[(m, t, w)]])) for w in widths]
            s = _slope(x, acts)
            slopes[m].append(s)
            if s > tol_grow:
                failing.append((s - tol_grow, (m, t, _ACT, s)))
            if t == 0:
                upd_slopes[m].append(float("nan"))
                continue
            upds = [float(np.mean([u for _, u in table[(m, t, w)]])) for w in widths]
            u = _slope(x, upds)
            upd_slopes[m].append(u)
            # A fixed-size output may legitimately lose its init-weight term like width^-1/2.
            floor = -(tol_vanish + (_READOUT_DECAY if m in fixed else 0.0))
            if u > tol_grow:
                failing.append((u - tol_grow, (m, t, _UPD, u)))
            elif u < floor:
                failing.append((floor - u, (m, t, _UPD, u)))
    failing.sort(key=lambda f: (-f[0], f[1][1], f[1][0]))
    return CoordCheckResult(
        passed=not failing,
        widths=widths,
        steps=list(range(steps + 1)),
        modules=modules,
        slopes=slopes,
        update_slopes=upd_slopes,
        stats=[r for r in records if r["module"] in slopes],
        failing=[f for _, f in failing],
        tolerances={"grow": tol_grow, "vanish": tol_vanish},
        fixed_size=fixed,
        parametrization=parametrization,
        optimizer=optimizer,
        lr=lr,
        extra={"seeds": list(seeds)},
    )


def _slope(x: np.ndarray, values: Sequence[float]) -> float:
    """Least-squares slope of log2(values) on x. NaN if every value is 0 (nothing to measure,
    e.g. a zero-initialised readout at init or a module that never changes); +inf if any
    value is non-finite (training diverged at some width, which must fail)."""
    v = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(v)):
        return math.inf
    if np.all(v == 0.0):
        return math.nan
    # A 0 at some widths only: floor it so the slope is huge rather than undefined.
    y = np.log2(np.maximum(v, np.finfo(float).tiny))
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def _optimizer_class(optimizer: str | type[torch.optim.Optimizer]) -> tuple[type[torch.optim.Optimizer], str]:
    """Map an optimizer name or class to (class, family name for ``param_groups``)."""
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        from .optim import optimizer_family

        return optimizer, optimizer_family(optimizer)
    known: dict[str, type[torch.optim.Optimizer]] = {
        "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
    }
    key = str(optimizer).lower()
    if key not in known:
        raise CoordCheckError(
            f"optimizer={optimizer!r} is not supported by coord_check. Fix: use one of {', '.join(known)} "
            "or pass a torch.optim.Optimizer subclass."
        )
    return known[key], key


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


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:+.2f}")


def _json_num(x: float) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None

