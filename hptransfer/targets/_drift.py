"""Fitted drift correction: measure how the optimal LR still moves with width, and extrapolate.

μP removes most of the LR optimum's movement with width, not all of it (residual drift is
normal, most of it in the first doublings from a small base: shared/RULES.md, "Known breakers").
SP practice handles the whole movement with a fitted power law of the optimum (DeepSeek LLM,
arXiv:2401.02954; Step Law, arXiv:2503.04715). This module is that empirical complement on top
of μP: after tuning, a short local LR sweep at the proxy width and at a few cheap extra widths, with
two or more seeds, gives the optimum per width (parabola vertex in log2 LR, bootstrap over seeds).
Each width's sweep **brackets** its optimum: it starts where the curve fitted to the widths before
predicts it (the tuned LR at the proxy), and walks ``fit_step`` octaves at a time towards lower loss,
up to ``fit_extend`` steps beyond the ``fit_points`` local grid, until the best point has both
neighbours (the check's adaptive walk, :mod:`hptransfer.check._adaptive`). A fixed grid centred on
the tuned LR lost exactly the widths whose optimum had moved most, so the fit gave up where it was
needed. One of two curves of log2 optimum against width is fitted to them (``transfer.fit_form``):

* ``power`` -- a straight line in log2 width, the SP practice above::

      log2 lr*(w) = a + s * log2(w)          lr_target = lr_proxy * 2 ** (s * log2(target / proxy))

  It extrapolates the fit widths' drift unchanged to every later doubling. Right for SP, whose
  optimum keeps moving (about -1 octave per doubling under Adam, as the LR must shrink like 1/width).
* ``converging`` -- a 1/width correction to a width-independent limit::

      log2 lr*(w) = a + b * proxy / w        lr_target = lr_proxy * 2 ** (b * (proxy / target - 1))

  Under μP the training dynamics have a well-defined infinite-width limit (Yang & Hu,
  arXiv:2011.14522; Yang et al., arXiv:2203.03466), so the optimum converges instead of moving
  forever; the leading finite-width deviation of the mean dynamics from that limit is O(1/width)
  (Bordelon & Pehlevan, arXiv:2304.03408; consistent with the across-width consistency measured by
  Vyas et al., arXiv:2305.18411). The correction is then bounded by ``-b`` however far the
  target is: most of it is spent in the first doublings, as measured.

``auto`` (the default) takes ``power`` for SP and ``converging`` for every width-scaled
parametrization. Whatever the form, :attr:`DriftFit.slope` is the drift the sweeps measured:
the fitted curve's shift across the fit widths per width doubling (for ``power`` simply ``s``),
with a 95% interval from the same bootstrap replicates. The fit is applied only when that
interval is narrower than ``fit_max_halfwidth`` octaves either side and no optimum sits at the
edge of the extended grid (it moved more than ``fit_extend`` steps beyond the local one). The test
is on what was measured, so it does not depend on how far the target is (a per-doubling average to
the target would shrink as the target moves away, since a converging correction is bounded).
Otherwise the tuned LR is kept and a warning says why, unless forced. The target LR is stored
as the base-width LR of the target spec (μP rescales it per parameter group).

The sweep runs through the transfer check's machinery (:func:`hptransfer.check._check.check_grid` with
the recipe's own runs), in the tuner's storage, so it resumes and can use several workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..check._adaptive import Walk
from ..check._check import check_grid
from ..check._optimum import bootstrap_optima
from ..check._runner import RecipeRunner
from ..errors import TransferError
from ..recipe import Recipe
from ..studies import storage_url
from ..training._build import model_cost

__all__ = ["DriftFit", "FIT_FORMS", "drift_shift", "fit_coefficient", "fit_drift", "fit_form", "fit_widths",
           "local_grid", "predict"]

#: The curves of log2 optimal LR against width that the fit can use (module docstring).
FIT_FORMS = ("power", "converging")


@dataclass
class DriftFit:
    """The outcome of :func:`fit_drift`.

    Attributes:
        form: the fitted curve, ``power`` or ``converging`` (module docstring).
        coef, coef_lo, coef_hi: its coefficient with a 95% bootstrap interval: the slope ``s``
            (octaves per doubling) of ``power``, the 1/width amplitude ``b`` (octaves) of ``converging``.
        slope, lo, hi: the drift the fit measured, octaves per width doubling averaged over the fit
            widths (the fitted curve's shift from the smallest to the largest fit width over the
            doublings between them; for ``power`` it is ``s``), with its 95% interval. The fallback
            judges this interval: it does not depend on how far the target is.
        widths: widths swept (the proxy first). optima_log2: log2 of the optimal LR per width.
        proxy_width, target_width: what the correction spans.
        correction_octaves: the fitted shift of log2 optimal LR from proxy to target when applied, else 0.
        correction_lo, correction_hi: the 95% interval of the fitted shift to the target (octaves),
            whether applied or not.
        applied: whether the target LR was corrected. reason: why not, when it was not.
        lr_proxy, lr_target: the tuned LR and the LR written for the target (base-width units).
        runs: training runs the fit used; grid_runs: what the fixed ``fit_points`` grid at every fit
            width would have cost (``runs`` minus it is ``runs_vs_fixed_grid`` in ``to_dict``: positive
            when bracketing had to walk past that grid, negative when the walk needed fewer).
        flops: the runs' estimated cost (6 x params x tokens).
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
    form: str = "power"
    coef: float = math.nan
    coef_lo: float = math.nan
    coef_hi: float = math.nan
    correction_lo: float = math.nan
    correction_hi: float = math.nan
    grid_runs: int = 0

    def at(self, width: int) -> DriftFit:
        """This fit extrapolated to another target ``width`` (the sweep and its verdict are the same)."""
        shifts = [drift_shift(self.form, c, self.proxy_width, width) for c in (self.coef_lo, self.coef_hi)]
        octaves = drift_shift(self.form, self.coef, self.proxy_width, width) if self.applied else 0.0
        return replace(self, target_width=int(width), correction_octaves=octaves, correction_lo=min(shifts),
                       correction_hi=max(shifts), lr_target=self.lr_proxy * 2.0 ** octaves)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``target.yaml`` and ``summary.md`` (non-finite numbers become None)."""
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {"form": self.form, "coef": num(self.coef), "coef_ci95": [num(self.coef_lo), num(self.coef_hi)],
                "slope": num(self.slope), "ci95": [num(self.lo), num(self.hi)],
                "unit": "octaves per width doubling, measured over the fit widths",
                "correction_ci95": [num(self.correction_lo), num(self.correction_hi)],
                "widths": list(self.widths), "optima_log2_lr": [num(x) for x in self.optima_log2],
                "proxy_width": self.proxy_width, "target_width": self.target_width,
                "correction_octaves": num(self.correction_octaves), "applied": self.applied, "reason": self.reason,
                "lr_proxy": self.lr_proxy, "lr_target": self.lr_target, "runs": self.runs,
                "grid_runs": self.grid_runs, "runs_vs_fixed_grid": self.runs - self.grid_runs, "flops": num(self.flops),
                "study": self.study, "grid": list(self.grid)}


def drift_shift(form: str, coef: Any, proxy: float, width: float) -> Any:
    """Octaves the optimal LR moves from width ``proxy`` to ``width`` under the fitted curve.

    ``coef`` may be an array (one coefficient per bootstrap replicate)."""
    if form == "power":
        return coef * math.log2(width / proxy)
    if form == "converging":
        return coef * (proxy / width - 1.0)
    raise TransferError(f"unknown drift fit form {form!r}. Fix: transfer.fit_form is one of {FIT_FORMS} or auto.")


def fit_coefficient(form: str, widths: Any, optima: Any) -> Any:
    """Least-squares coefficient of ``form`` through log2 optima at ``widths`` (proxy = smallest).

    ``optima`` is ``(n_widths,)`` or ``(n_replicates, n_widths)``; a row with a NaN gives NaN.
    ``power``: the slope against log2(width). ``converging``: the slope against proxy/width."""
    w = np.asarray(widths, dtype=float)
    if form == "power":
        u = np.log2(w)
    elif form == "converging":
        u = w.min() / w
    else:
        raise TransferError(f"unknown drift fit form {form!r}. Fix: transfer.fit_form is one of {FIT_FORMS} or auto.")
    y = np.asarray(optima, dtype=float)
    uc = u - u.mean()
    return ((y - y.mean(axis=-1, keepdims=True)) * uc).sum(axis=-1) / float(uc @ uc)


def _per_doubling(form: str, coefs: tuple[float, float, float], proxy: int, width: int) -> tuple[float, float, float]:
    """``(slope, lo, hi)``: the coefficient and its interval as octaves per doubling from proxy to width
    (the fitted curve's shift between them over the doublings between them)."""
    doublings = math.log2(width / proxy)
    if doublings <= 0:
        return math.nan, math.nan, math.nan
    vals = [drift_shift(form, c, proxy, width) / doublings for c in coefs]
    return vals[0], min(vals[1:]), max(vals[1:])


def fit_form(recipe: Recipe) -> str:
    """The recipe's fit form with ``auto`` resolved: ``power`` under SP, ``converging`` otherwise."""
    form = recipe.transfer.fit_form
    if form == "auto":
        return "power" if recipe.parametrization.name == "sp" else "converging"
    return form


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
    form = fit_form(recipe)
    grid = local_grid(lr, t.fit_points + 2 * t.fit_extend, t.fit_step)  # the bound of the bracketing walk
    steps, batch = recipe.train.steps, recipe.train.batch_size
    runner = RecipeRunner(recipe, steps=steps, batch_size=batch)
    fixed = {k: v for k, v in values.items() if k != "lr" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    report = check_grid(runner, widths=widths, grid={"lr": grid}, seeds=t.fit_seeds,
                        parametrizations=[recipe.parametrization.name], fixed=fixed, expect={},
                        storage=storage_url(storage or recipe.tune.storage, recipe.run_dir),
                        study_prefix=f"{recipe.name}-driftfit", workers=workers, progress=progress,
                        strategy="adaptive", start=lr, prune_margins=None,
                        walk=Walk(survey=False, anchors=False, predict=lambda done, w: predict(form, done, w)))
    res = report.results[0]
    optima = np.array([o.x for o in res.optima])
    boot = bootstrap_optima(res.x, res.losses)  # the check's own replicates (same seed)
    coefs = fit_coefficient(form, widths, boot)
    coefs = coefs[np.isfinite(coefs)]
    coef = float(fit_coefficient(form, widths, optima))
    c_lo, c_hi = (float(v) for v in np.percentile(coefs, [2.5, 97.5])) if coefs.size else (math.nan, math.nan)
    slope, lo, hi = _per_doubling(form, (coef, c_lo, c_hi), proxy, max(widths))
    ran = [int(np.sum(~np.isnan(res.losses[k]))) for k in range(len(widths))]  # (point, seed) runs per width
    runs = sum(ran)
    flops = sum(model_cost(recipe.at(w))["flops"] * n for w, n in zip(widths, ran))
    reason = _distrust(res, (slope, lo, hi), t.fit_max_halfwidth)
    applied = not reason or t.fit_force
    if reason and t.fit_force:
        reason = f"forced despite: {reason}"
    return DriftFit(
        slope=slope, lo=lo, hi=hi, widths=widths, optima_log2=[float(v) for v in optima], proxy_width=proxy,
        target_width=target_width, correction_octaves=0.0, applied=applied, reason=reason, lr_proxy=lr, lr_target=lr,
        runs=runs, flops=flops, study=report.studies[0] if report.studies else "", grid=grid, form=form, coef=coef,
        coef_lo=c_lo, coef_hi=c_hi, grid_runs=t.fit_points * len(widths) * len(t.fit_seeds),
    ).at(target_width)  # .at: the correction to the target and its interval


def predict(form: str, done: list[tuple[float, float]], width: float) -> float:
    """The log2 optimal LR at ``width`` on the curve ``form`` through the optima ``(width, log2 lr*)`` found
    so far: where the next width's sweep starts. One width: its own optimum."""
    if len(done) < 2:
        return done[-1][1] if done else math.nan
    ws, ys = np.array([d[0] for d in done]), np.array([d[1] for d in done])
    coef = float(fit_coefficient(form, ws, ys))  # least squares: y = a + coef * shift(w), shift(w0) = 0
    shifts = np.array([drift_shift(form, coef, float(ws.min()), w) for w in ws])
    return float(ys.mean() - shifts.mean() + drift_shift(form, coef, float(ws.min()), width))


def _distrust(res: Any, slope: tuple[float, float, float], max_halfwidth: float) -> str:
    """Why the fit should not be applied ('' when it can be). ``slope``: (slope, lo, hi) per doubling."""
    if not all(math.isfinite(v) for v in slope):
        return "the fit has no finite slope (runs diverged or are missing)"
    edge = [o.width for o in res.optima if o.edge]
    if edge:
        return (f"the optimum at width(s) {edge} sits at the edge of the LR grid even after bracketing (it moved "
                "more than transfer.fit_extend steps beyond the local grid); raise transfer.fit_extend or fit_step")
    _, lo, hi = slope
    if (hi - lo) / 2.0 > max_halfwidth:
        return (f"the slope's 95% interval [{lo:+.2f}, {hi:+.2f}] is wider than +/-{max_halfwidth:g} octave; "
                "add transfer.fit_seeds or fit widths, or set transfer.fit_force: true")
    return ""
