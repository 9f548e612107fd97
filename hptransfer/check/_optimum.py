"""Where is the loss minimum of a sweep, how sure are we, and how does it move with width.

Input everywhere: ``losses[w, g, s]`` -- final validation loss (nats) at width index ``w``,
grid point ``g`` and seed ``s``; ``math.inf`` marks a diverged run, ``nan`` a missing one.
Grid coordinates ``x`` are ``log2`` of the swept hyperparameter, so every position, interval
and slope below is in octaves (factors of 2).

Method (see ``docs/verification.md`` for why):

* **Per-width optimum** -- average the seeds at each grid point (a point where any seed
  diverged counts as diverged: it is not a safe place to be), take the discrete argmin, and
  put a parabola through it and its two neighbours in log2 space. The vertex of that
  3-point parabola always lies within half a grid step of the argmin, so it refines the
  grid without ever extrapolating; a wider least-squares window would be pulled by the
  asymmetric shape of loss-vs-LR curves (a steep divergence wall on the high side). Next to
  a diverged neighbour the argmin itself is used.
* **Edge** -- an argmin on the first or last grid point is flagged: the true optimum may lie
  outside the grid, so no verdict may rest on it.
* **Uncertainty** -- a paired bootstrap over seeds: each replicate draws the seeds with
  replacement, independently per width (different widths are different networks), keeps
  each seed's whole curve together (a seed's losses at neighbouring grid points are
  correlated), and recomputes every optimum. Intervals are the 2.5/97.5 percentiles.
* **Drift** -- ordinary least squares of the optimum against ``log2(width)``: octaves of
  the HP per doubling of width. Its interval is the bootstrap percentile interval; with 5 or
  more widths it is widened to the classical OLS t-interval when that is wider (with 2 seeds
  the bootstrap has only 3 distinct draws per width and can understate the scatter of the
  optima around the line; with 3-4 widths the t-interval, on 1-2 degrees of freedom, would be
  uselessly wide, so it is not used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "OptimumEstimate",
    "Drift",
    "mean_curve",
    "vertex",
    "estimate",
    "bootstrap_optima",
    "interp_curve",
    "DEFAULT_N_BOOT",
]

#: Widths needed before the OLS t-interval may widen the drift interval (t(0.975, 3) = 3.2;
#: with 3 widths t(0.975, 1) = 12.7 would swamp any signal).
_MIN_WIDTHS_FOR_T = 5

#: Bootstrap replicates; 1000 keeps the 2.5/97.5 percentiles stable to ~0.01 octave.
DEFAULT_N_BOOT = 1000


@dataclass
class OptimumEstimate:
    """The optimum at one width.

    Attributes:
        width: the width.
        x: estimated optimal log2(HP value).
        lo, hi: 95% bootstrap interval of ``x`` (octaves, log2 units).
        index: grid index of the discrete argmin of the seed-mean curve (-1: none finite).
        edge: ``"low"`` or ``"high"`` when the argmin is on that end of the grid, else None.
        loss: seed-mean loss at the argmin (nats).
    """

    width: float
    x: float
    lo: float
    hi: float
    index: int
    edge: str | None
    loss: float


@dataclass
class Drift:
    """Slope of the optimum against log2(width) and the total shift over the width range.

    Attributes:
        slope: octaves of HP per width doubling (OLS over the per-width optima).
        lo, hi: 95% interval of ``slope`` (bootstrap, widened to the OLS t-interval if wider).
        shift: optimum at the largest width minus at the smallest (octaves).
        shift_lo, shift_hi: its 95% bootstrap interval.
        intercept: fitted log2(HP) at log2(width) = 0, for drawing the line.
    """

    slope: float
    lo: float
    hi: float
    shift: float
    shift_lo: float
    shift_hi: float
    intercept: float
    boot_slopes: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)


def mean_curve(losses: np.ndarray) -> np.ndarray:
    """Seed-mean loss per grid point of ``losses[g, s]``.

    ``inf`` where any seed diverged, ``nan`` where every seed is missing; missing seeds are
    otherwise ignored.
    """
    losses = np.asarray(losses, dtype=float)
    out = np.full(losses.shape[0], np.nan)
    for g, row in enumerate(losses):
        present = row[~np.isnan(row)]
        if present.size == 0:
            continue
        out[g] = math.inf if np.isinf(present).any() else float(present.mean())
    return out


def vertex(x: np.ndarray, y: np.ndarray) -> tuple[float, int, str | None]:
    """Sub-grid minimum of one curve: ``(x_opt, argmin index, edge)``.

    ``edge`` is ``"low"``/``"high"`` when the argmin is the first/last grid point (then
    ``x_opt`` is that point). Returns ``(nan, -1, None)`` when no point is finite.
    """
    finite = np.isfinite(y)
    if not finite.any():
        return math.nan, -1, None
    i = int(np.argmin(np.where(finite, y, np.inf)))
    if i == 0:
        return float(x[0]), i, "low"
    if i == len(x) - 1:
        return float(x[-1]), i, "high"
    if not (finite[i - 1] and finite[i + 1]):
        return float(x[i]), i, None
    x0, x1, x2 = x[i - 1], x[i], x[i + 1]
    y0, y1, y2 = y[i - 1], y[i], y[i + 1]
    # Vertex of the parabola through three points (unequal spacing allowed).
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    if den == 0.0:  # three equal losses: no curvature, stay on the argmin
        return float(x1), i, None
    xv = float(x1 - 0.5 * num / den)
    # y1 is the smallest of the three, so the vertex is within the bracket; clip for round-off.
    return float(np.clip(xv, x0, x2)), i, None


def interp_curve(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """Loss of the curve ``y(x)`` at ``at`` by linear interpolation in log2 space.

    ``inf`` if a bracketing point diverged; ``nan`` outside the grid or next to a missing point.
    """
    if not (x[0] <= at <= x[-1]):
        return math.nan
    j = int(np.searchsorted(x, at))
    if j < len(x) and x[j] == at:
        return float(y[j])
    a, b = y[j - 1], y[j]
    if np.isnan(a) or np.isnan(b):
        return math.nan
    if np.isinf(a) or np.isinf(b):
        return math.inf
    t = (at - x[j - 1]) / (x[j] - x[j - 1])
    return float(a + t * (b - a))


def _optima(x: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Point-estimate optimum per width of ``losses[w, g, s]``."""
    return np.array([vertex(x, mean_curve(losses[w]))[0] for w in range(losses.shape[0])])


def _ols(lw: np.ndarray, opt: np.ndarray) -> tuple[float, float, float]:
    """``(slope, intercept, t-interval half-width)`` of ``opt`` against ``lw``."""
    slope, intercept = np.polyfit(lw, opt, 1)
    n = len(lw)
    if n < _MIN_WIDTHS_FOR_T:
        return float(slope), float(intercept), 0.0
    resid = opt - (slope * lw + intercept)
    se = math.sqrt(float(resid @ resid) / (n - 2) / float(((lw - lw.mean()) ** 2).sum()))
    from scipy import stats  # local: scipy.stats costs ~1.4 s to import and only this line needs it

    return float(slope), float(intercept), float(stats.t.ppf(0.975, n - 2) * se)


def bootstrap_optima(x: np.ndarray, losses: np.ndarray, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
    """The optimum (log2, parabola vertex) per width for each bootstrap replicate of the seeds.

    Each replicate draws the seeds with replacement independently per width (module docstring).
    Returns ``(n_boot, n_widths)``; NaN where a replicate's curve has no finite point. The same
    ``seed`` gives the same replicates as :func:`estimate`'s, so a fit on them (e.g. the drift
    correction's) matches the check's intervals."""
    x = np.asarray(x, dtype=float)
    losses = np.asarray(losses, dtype=float)
    n_w, _, n_s = losses.shape
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, n_w))
    for b in range(n_boot):
        for w in range(n_w):
            pick = rng.integers(0, n_s, n_s)
            boot[b, w] = vertex(x, mean_curve(losses[w][:, pick]))[0]
    return boot


def estimate(
    widths: np.ndarray,
    x: np.ndarray,
    losses: np.ndarray,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> tuple[list[OptimumEstimate], Drift]:
    """Per-width optima with bootstrap intervals, and the drift fit.

    Args:
        widths: ascending widths, shape ``(W,)``.
        x: ascending log2 grid, shape ``(G,)``.
        losses: ``(W, G, S)`` final losses (inf diverged, nan missing).
        n_boot: bootstrap replicates (default :data:`DEFAULT_N_BOOT`).
        seed: RNG seed of the bootstrap, so reports are reproducible.
    """
    widths = np.asarray(widths, dtype=float)
    x = np.asarray(x, dtype=float)
    losses = np.asarray(losses, dtype=float)
    n_w = losses.shape[0]
    lw = np.log2(widths)
    boot = bootstrap_optima(x, losses, n_boot=n_boot, seed=seed)

    optima = []
    for w in range(n_w):
        y = mean_curve(losses[w])
        xo, idx, edge = vertex(x, y)
        col = boot[:, w][np.isfinite(boot[:, w])]
        lo, hi = (np.percentile(col, [2.5, 97.5]) if col.size else (math.nan, math.nan))
        optima.append(OptimumEstimate(float(widths[w]), xo, float(lo), float(hi), idx, edge,
                                      float(y[idx]) if idx >= 0 else math.nan))

    point = np.array([o.x for o in optima])
    if n_w < 2 or not np.isfinite(point).all():
        nan = math.nan
        return optima, Drift(nan, nan, nan, nan, nan, nan, nan)
    slope, intercept, half = _ols(lw, point)
    ok = np.isfinite(boot).all(axis=1)
    bslopes = np.polyfit(lw, boot[ok].T, 1)[0] if ok.any() else np.array([slope])
    blo, bhi = np.percentile(bslopes, [2.5, 97.5])
    shifts = boot[ok, -1] - boot[ok, 0] if ok.any() else np.array([point[-1] - point[0]])
    slo, shi = np.percentile(shifts, [2.5, 97.5])
    drift = Drift(
        slope=slope,
        lo=float(min(blo, slope - half)),
        hi=float(max(bhi, slope + half)),
        shift=float(point[-1] - point[0]),
        shift_lo=float(slo),
        shift_hi=float(shi),
        intercept=intercept,
        boot_slopes=np.asarray(bslopes),
    )
    return optima, drift
