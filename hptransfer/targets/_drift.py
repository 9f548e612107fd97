"""Fitted drift correction: measure how the optimal LR still moves with width, and extrapolate.

μP removes most of the LR optimum's movement with width, not all of it (residual drift is
normal, most of it in the first doublings from a small base: shared/RULES.md, "Known breakers").
SP practice handles the whole movement with a fitted power law of the optimum (DeepSeek LLM,
arXiv:2401.02954; Step Law, arXiv:2503.04715). This module is that empirical complement on top
of μP: after tuning, a short local LR sweep (``fit_points`` values, ``fit_step`` octaves apart,
centred on the tuned LR) at the proxy width and at a few cheap extra widths, with two or more
seeds, gives the optimum per width (parabola vertex in log2 LR, bootstrap over seeds) and the
slope of log2 optimum against log2 width with a 95% interval. The target LR is then::

    lr_target = lr_proxy * 2 ** (slope * log2(target_width / proxy_width))

stored as the base-width LR of the target spec (μP rescales it per parameter group). A slope
interval wider than ``fit_max_halfwidth`` octaves, or an optimum at the edge of the local grid,
makes the fit untrustworthy: the tuned value is kept and a warning says why, unless forced.

The sweep runs through the transfer check's machinery (:func:`hptransfer.check.check_grid` with
the recipe's own runs), in the tuner's storage, so it resumes and can use several workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..check import RecipeRunner, check_grid
from ..errors import TransferError
from ..recipe import Recipe
from ..studies import storage_url
from ..training import model_cost

__all__ = ["DriftFit", "fit_drift", "fit_widths", "local_grid"]


@dataclass
class DriftFit:
    """The outcome of :func:`fit_drift`.

    Attributes:
        slope, lo, hi: residual drift of the optimal LR, octaves per width doubling, with its 95%
            bootstrap interval.
        widths: widths swept (the proxy first). optima_log2: log2 of the optimal LR per width.
        proxy_width, target_width: what the correction spans.
        correction_octaves: ``slope * log2(target / proxy)`` when applied, else 0.
        applied: whether the target LR was corrected. reason: why not, when it was not.
        lr_proxy, lr_target: the tuned LR and the LR written for the target (base-width units).
        runs: training runs the fit used. flops: their estimated cost (6 x params x tokens).
        study: the Optuna study holding the sweep (rerun resumes it).
    """

    slope: float
    lo: float
    hi: float
    widths: list[int]
    optima_log2: list[float]
    proxy_width: int
    target_width: int
    correction_octaves: float
    applied: bool
    reason: str
    lr_proxy: float
    lr_target: float
    runs: int
    flops: float
    study: str = ""
    grid: list[float] = field(default_factory=list)

    def at(self, width: int) -> DriftFit:
        """This fit extrapolated to another target ``width`` (the sweep is the same)."""
        octaves = self.slope * math.log2(width / self.proxy_width) if self.applied else 0.0
        return replace(self, target_width=int(width), correction_octaves=octaves,
                       lr_target=self.lr_proxy * 2.0 ** octaves)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``target.yaml`` and ``summary.md`` (non-finite numbers become None)."""
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"slope": num(self.slope), "ci95": [num(self.lo), num(self.hi)], "unit": "octaves per width doubling",
                "widths": list(self.widths), "optima_log2_lr": [num(x) for x in self.optima_log2],
                "proxy_width": self.proxy_width, "target_width": self.target_width,
                "correction_octaves": num(self.correction_octaves), "applied": self.applied, "reason": self.reason,
                "lr_proxy": self.lr_proxy, "lr_target": self.lr_target, "runs": self.runs, "flops": num(self.flops),
                "study": self.study, "grid": list(self.grid)}


def local_grid(lr: float, points: int, step: float) -> list[float]:
    """``points`` LRs ``step`` octaves apart, centred on ``lr`` (ascending)."""
    half = (points - 1) / 2.0
    return [float(lr * 2.0 ** ((k - half) * step)) for k in range(points)]


def fit_widths(recipe: Recipe) -> list[int]:
    """The widths of the fit: the proxy width and ``transfer.fit_widths`` (default 2x and 4x the proxy)."""
    proxy = max(recipe.widths.proxy)
    extra = recipe.transfer.fit_widths or (2 * proxy, 4 * proxy)
    return sorted({proxy, *(int(w) for w in extra)})


def fit_drift(
    recipe: Recipe,
    values: dict[str, Any],
    target_width: int,
    *,
    storage: str | None = None,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> DriftFit:
    """Sweep the LR locally at the fit widths, fit the residual drift and correct the target LR.

    Args:
        recipe: the tuned recipe (its ``transfer`` section sets ``fit_widths``, ``fit_points``,
            ``fit_step``, ``fit_seeds``, ``fit_max_halfwidth`` and ``fit_force``).
        values: the tuned values (``lr`` and the rest; the rest stay fixed during the sweep).
        target_width: the width to extrapolate to.
        storage: study storage (default: the recipe's tuning storage).
        workers: local worker processes for the sweep.
        progress: one-line progress messages.

    Raises:
        TransferError: fewer than three fit widths, or a fit width at or above the target.
    """
    t = recipe.transfer
    widths = fit_widths(recipe)
    proxy = widths[0]
    if len(widths) < 3:
        raise TransferError(f"transfer.fit_widths={list(t.fit_widths or [])} gives {len(widths)} widths with the "
                            "proxy; a slope with an interval needs 3. Fix: e.g. fit_widths: [2x, 4x the proxy].")
    if max(widths) >= target_width:
        raise TransferError(f"transfer.fit_widths reach {max(widths)}, not below the target width {target_width}: "
                            "the fit is meant to be cheap. Fix: use widths between the proxy and the target.")
    lr = float(values["lr"])
    grid = local_grid(lr, t.fit_points, t.fit_step)
    steps, batch = recipe.train.steps, recipe.train.batch_size
    runner = RecipeRunner(recipe, steps=steps, batch_size=batch)
    fixed = {k: v for k, v in values.items() if k != "lr" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    report = check_grid(runner, widths=widths, grid={"lr": grid}, seeds=t.fit_seeds,
                        parametrizations=[recipe.parametrization.name], fixed=fixed, expect={},
                        storage=storage_url(storage or recipe.tune.storage, recipe.run_dir),
                        study_prefix=f"{recipe.name}-driftfit", workers=workers, progress=progress)
    res = report.results[0]
    d = res.drift
    runs = len(grid) * len(widths) * len(t.fit_seeds)
    flops = sum(model_cost(recipe.at(w))["flops"] for w in widths) * len(grid) * len(t.fit_seeds)
    octaves = d.slope * math.log2(target_width / proxy)
    reason = _distrust(res, t.fit_max_halfwidth)
    applied = not reason or t.fit_force
    if reason and t.fit_force:
        reason = f"forced despite: {reason}"
    return DriftFit(
        slope=d.slope, lo=d.lo, hi=d.hi, widths=widths, optima_log2=[o.x for o in res.optima], proxy_width=proxy,
        target_width=target_width, correction_octaves=octaves if applied else 0.0, applied=applied,
        reason=reason, lr_proxy=lr, lr_target=lr * 2.0 ** octaves if applied else lr, runs=runs, flops=flops,
        study=report.studies[0] if report.studies else "", grid=grid)


def _distrust(res: Any, max_halfwidth: float) -> str:
    """Why the fit should not be applied ('' when it can be)."""
    d = res.drift
    if not all(math.isfinite(v) for v in (d.slope, d.lo, d.hi)):
        return "the fit has no finite slope (runs diverged or are missing)"
    edge = [o.width for o in res.optima if o.edge]
    if edge:
        return (f"the optimum at width(s) {edge} sits at the edge of the local LR grid, so it lies outside it; "
                "widen transfer.fit_points or transfer.fit_step")
    half = (d.hi - d.lo) / 2.0
    if half > max_halfwidth:
        return (f"the slope's 95% interval [{d.lo:+.2f}, {d.hi:+.2f}] is wider than +/-{max_halfwidth:g} octave; "
                "add transfer.fit_seeds or fit widths, or set transfer.fit_force: true")
    return ""
