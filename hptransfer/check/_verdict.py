"""The verdict of one swept HP under one parametrization: optima, drift, regret, wider-is-better.

:func:`judge_sweep` turns a sweep's loss array into a :class:`ParamResult` with the verdict
(``pass``, ``fail``, ``inconclusive`` when the drift's interval is too wide to judge, or ``grid too
narrow``) and reasons that name the HP and the width.
Tolerances are documented on :class:`hptransfer.check.Tolerances`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..recipe._sections import Expectation
from . import _optimum
from ._sweep import SweepData

if TYPE_CHECKING:
    from ._report import Tolerances

__all__ = ["ParamResult", "judge_sweep", "Verdict"]

#: The one verdict vocabulary: what the transfer check concludes for one HP under one parametrization
#: (``pass``, ``fail``, ``inconclusive``, ``grid too narrow``) and what ``hptransfer run`` concludes of its target
#: (``pass``, ``fail``, ``inconclusive``). Shown upper-case on the command line and in summary.md.
Verdict = Literal["pass", "fail", "inconclusive", "grid too narrow"]


@dataclass
class ParamResult:
    """The analysis of one swept HP under one parametrization.

    Attributes:
        parametrization, hp: what was checked.
        widths: ascending widths. values: ascending grid of ``hp``. x: ``log2(values)``.
        losses: ``(n_widths, n_values, n_seeds)`` final validation losses (inf diverged, nan missing).
        optima: per-width :class:`~hptransfer.check.OptimumEstimate` (log2 units).
        drift: :class:`~hptransfer.check.Drift` (octaves per doubling; shift in octaves).
        regret: nats; ``regret_rel``: as a fraction of the best loss at the largest width.
        at_proxy_opt: loss at each width at the smallest width's optimum (nats).
        verdict: ``"pass"``, ``"fail"``, ``"inconclusive"`` or ``"grid too narrow"``.
        reasons: why it did not pass, naming width and HP. next_range: ``(low, high)`` values
            to try when the grid is too narrow.
        expect: ``pass``/``fail``/``any``; met: whether the verdict matches it.
    """

    parametrization: str
    hp: str
    widths: list[float]
    values: list[float]
    x: np.ndarray
    losses: np.ndarray
    optima: list[_optimum.OptimumEstimate]
    drift: _optimum.Drift
    regret: float
    regret_rel: float
    at_proxy_opt: list[float]
    verdict: Verdict
    reasons: list[str]
    next_range: tuple[float, float] | None
    n_diverged: int
    n_missing: int
    expect: Expectation = "pass"

    @property
    def met(self) -> bool:
        return self.expect == "any" or self.verdict == self.expect

    def to_dict(self) -> dict[str, Any]:
        d = self.drift
        return {
            "parametrization": self.parametrization, "hp": self.hp, "verdict": self.verdict, "expect": self.expect,
            "met": self.met, "reasons": list(self.reasons),
            "drift": {"slope": _num(d.slope), "ci95": [_num(d.lo), _num(d.hi)], "unit": "octaves per width doubling"},
            "shift": {"octaves": _num(d.shift), "ci95": [_num(d.shift_lo), _num(d.shift_hi)]},
            "regret": {"nats": _num(self.regret), "relative": _num(self.regret_rel)},
            "wider_is_better": {"width": self.widths, "loss_at_proxy_optimum": [_num(v) for v in self.at_proxy_opt]},
            "optima": [{"width": o.width, "log2": _num(o.x), "value": _num(2.0 ** o.x), "ci95_log2": [_num(o.lo),
                        _num(o.hi)], "edge": o.edge, "loss": _num(o.loss)} for o in self.optima],
            "next_range": list(self.next_range) if self.next_range else None,
            "n_diverged": self.n_diverged, "n_missing": self.n_missing,
            "grid": {"values": self.values, "widths": self.widths},
            "losses": [[[_num(v) for v in seeds] for seeds in row] for row in self.losses.tolist()],
        }


def judge_sweep(data: SweepData, parametrization: str, tol: Tolerances, *, expect: Expectation = "pass",
            n_boot: int = _optimum.DEFAULT_N_BOOT) -> ParamResult:
    """Optima, drift, regret, wider-is-better and the verdict for one parametrization of a sweep."""
    plan, losses = data.plan, data.losses[parametrization]
    widths = np.asarray(plan.widths, dtype=float)
    x = np.log2(np.asarray(plan.values))
    optima, drift = _optimum.estimate(widths, x, losses, n_boot=n_boot)
    curves = [_optimum.mean_curve(losses[w]) for w in range(len(widths))]
    x0 = optima[0].x
    at_opt = [_optimum.interp_curve(x, c, x0) if math.isfinite(x0) else math.nan for c in curves]
    last = curves[-1]
    best = float(np.min(last[np.isfinite(last)])) if np.isfinite(last).any() else math.nan
    regret = at_opt[-1] - best if math.isfinite(best) else math.nan
    regret_rel = regret / best if math.isfinite(best) and best > 0 else math.nan
    # An adaptive sweep leaves unplanned points NaN on purpose; only runs that raised are missing.
    n_missing = data.failed if data.sparse else int(np.isnan(losses).sum())
    n_div = int(np.isinf(losses).sum())

    reasons: list[str] = []
    where = f"{parametrization} {plan.hp}"
    if n_missing:
        reasons.append(f"{where}: {n_missing} run(s) missing or failed; rerun to fill the grid ({data.study}).")
    hopeless = [int(o.width) for o in optima if o.index < 0]
    if hopeless:
        reasons.append(f"{where}: every {plan.hp} diverged at width(s) {hopeless}.")
    edges = [o for o in optima if o.edge]
    next_range = None
    flat = [] if data.sparse else _flat_widths(widths, losses)
    if flat:
        reasons.append(f"{where}: INCONCLUSIVE: the loss does not depend on {plan.hp} beyond seed noise at width(s) "
                       f"{flat} (one-way ANOVA over the grid, p > {FLAT_P:g}): the seeds, not {plan.hp}, place the "
                       f"optimum there. Fix: a grid or task where {plan.hp} matters (longer training, a wider grid), "
                       "or more check.seeds.")
        verdict: Verdict = "inconclusive"
    elif edges or hopeless:
        span = float(x[-1] - x[0])
        low = any(o.edge == "low" for o in edges) or bool(hopeless)
        high = any(o.edge == "high" for o in edges)
        lo2, hi2 = x[0] - (span / 2 if low else 0.0), x[-1] + (span / 2 if high else 0.0)
        next_range = (float(2.0 ** lo2), float(2.0 ** hi2))
        for o in edges:
            reasons.append(f"{where}: optimum at the {o.edge} edge of the grid at width {o.width:g} "
                           f"({plan.hp}={2.0 ** o.x:.3g}); the true optimum may lie outside.")
        reasons.append(f"{where}: grid too narrow; try {plan.hp} from {next_range[0]:.3g} to {next_range[1]:.3g} "
                       f"(log2 {lo2:.1f} .. {hi2:.1f}).")
        verdict = "grid too narrow"
    else:
        undecided = _undecided(drift, tol.max_drift, losses.shape[2], where)
        if undecided:
            reasons.append(undecided)
        elif abs(drift.slope) > tol.max_drift:
            dev = [abs(o.x - x0) for o in optima]
            w_bad = optima[int(np.argmax(dev))]
            reasons.append(f"{where}: drift {drift.slope:+.2f} octave/doubling (95% CI {drift.lo:+.2f} .. "
                           f"{drift.hi:+.2f}) exceeds ±{tol.max_drift:g}; the optimum moves most at width "
                           f"{w_bad.width:g} ({w_bad.x - x0:+.2f} octaves from width {optima[0].width:g}).")
        if not math.isfinite(regret) or regret_rel > tol.max_regret:
            what = "diverges" if regret == math.inf else f"costs {regret:.4f} nats ({100 * regret_rel:.2f}%)"
            reasons.append(f"{where}: width {optima[0].width:g}'s optimum {plan.hp}={2.0 ** x0:.3g} {what} at width "
                           f"{widths[-1]:g} (regret tolerance {100 * tol.max_regret:g}%).")
        for k in range(len(widths) - 1):
            a, b = at_opt[k], at_opt[k + 1]
            if not (math.isfinite(b) and math.isfinite(a)) or (b - a) / a > tol.max_wider_worse:
                got = "diverges" if b == math.inf else f"loss {a:.4f} -> {b:.4f}"
                reasons.append(f"{where}: wider is worse at width {widths[k + 1]:g} at {plan.hp}={2.0 ** x0:.3g} "
                               f"({got} from width {widths[k]:g}).")
                break
        # regret and wider-is-better are read at the proxy's optimum, which an undecided drift says noise placed
        verdict = "inconclusive" if undecided else "fail" if reasons else "pass"
    return ParamResult(parametrization, plan.hp, widths.tolist(), list(plan.values), x, losses, optima, drift,
                       regret, regret_rel, at_opt, verdict, reasons, next_range, n_div, n_missing, expect)


#: Significance below which a grid sweep's loss counts as depending on the swept HP at a width.
FLAT_P = 0.01


def _flat_widths(widths: np.ndarray, losses: np.ndarray) -> list[int]:
    """Widths at which the seed-mean loss does not vary over the grid more than seed noise explains.

    One-way ANOVA over the grid points where every seed finished (at least 5): between-point variance
    of the seed means against the within-point (between-seed) variance. A grid sweep of a μP or SP
    recipe gives p < 1e-3 at every width (docs/bench/check_strategies); a loss that ignores the HP
    gives p of 0.1 to 0.9. Not applied to adaptive sweeps, whose few points sit where the curve is flat.
    """
    from scipy import stats  # local: scipy.stats is slow to import

    out = []
    for w, grid in zip(widths, losses, strict=True):
        done = grid[np.isfinite(grid).all(axis=1)]
        k, n = done.shape
        if k < 5 or n < 2:
            continue
        within = float(np.mean(np.var(done, axis=1, ddof=1)))
        between = float(np.var(done.mean(axis=1), ddof=1)) * n
        if within > 0 and stats.f.sf(between / within, k - 1, k * (n - 1)) > FLAT_P:
            out.append(int(w))
    return out


def _undecided(drift: _optimum.Drift, band: float, n_seeds: int, where: str) -> str:
    """Why the drift cannot be judged ('' when it can).

    The drift decides when its 95% interval lies inside ±``band`` (pass) or outside it (fail), or is
    narrow enough that the point estimate does: a half-width of at most ``band``, which the shipped
    recipes' μP checks reach with 2 seeds (0.12 on the MLP, 0.08 on the GPT at 64-256). A wider
    interval that straddles the band is seed noise, not a verdict: the number of seeds that would
    bring it to ``band`` is estimated from the half-width's 1/sqrt(seeds) law.
    """
    if not (math.isfinite(drift.slope) and math.isfinite(drift.lo) and math.isfinite(drift.hi)):
        return f"{where}: the drift could not be measured (slope {drift.slope}); the optima are too noisy to fit."
    inside = -band <= drift.lo and drift.hi <= band
    outside = drift.lo > band or drift.hi < -band
    half = (drift.hi - drift.lo) / 2
    if inside or outside or half <= band:
        return ""
    need = math.ceil(n_seeds * (half / band) ** 2)
    return (f"{where}: INCONCLUSIVE: drift {drift.slope:+.2f} octave/doubling with a 95% CI of {drift.lo:+.2f} .. "
            f"{drift.hi:+.2f}, wider than the ±{band:g} it is judged against: the seeds, not the widths, set the "
            f"optimum. About {need} seeds (now {n_seeds}) would narrow it enough to decide: check.seeds.")


def _num(v: float) -> float | None:
    v = float(v)
    return round(v, 6) if math.isfinite(v) else None
