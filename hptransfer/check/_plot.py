"""The TP5-style transfer figure of a :class:`~hptransfer.check.TransferReport`.

Top row, one panel per parametrization: seed-mean final loss against log2(HP), one curve per
width (light to dark = narrow to wide), the estimated optimum of each width as a marker with
its 95% bootstrap interval, diverged grid points as crosses on the top edge. Bottom row: the
optimum against log2(width) with its interval and the fitted drift line, slope in the legend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import new_figure, save_figure
from ..errors import CheckError
from . import _optimum

if TYPE_CHECKING:
    from ._report import TransferReport
    from ._verdict import ParamResult

__all__ = ["plot_report"]


def _ylim(results: list[ParamResult]) -> tuple[float, float]:
    """Zoom on the basins: from the best loss to a bit above the widest curve's loss at the grid's
    ends would hide the minima when SP losses explode; use the 35th percentile of finite losses."""
    finite = np.concatenate([_finite_means(r) for r in results])
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(np.percentile(finite, 35))
    # every width's own minimum (its star) stays in view, however far above the others it sits
    # (a narrow model several tenths of a nat worse than the wide ones would otherwise be cut off)
    bests = [float(np.nanmin(m)) for r in results for w in range(len(r.widths))
             for m in [_optimum.mean_curve(r.losses[w])] if np.isfinite(m).any()]
    hi = max(hi, lo + 1e-3, *(b + 0.1 * (b - lo) for b in bests))
    pad = 0.08 * (hi - lo)
    return lo - pad, hi + 3 * pad


def _finite_means(r: ParamResult) -> np.ndarray:
    means = np.stack([_optimum.mean_curve(r.losses[w]) for w in range(len(r.widths))])
    return means[np.isfinite(means)]


def plot_report(report: TransferReport, path: str | Path, *, hp: str = "lr") -> Path:
    """Write the figure for ``hp`` to ``path`` (PNG) and return the path."""
    results = [r for r in report.results if r.hp == hp]
    if not results:
        raise CheckError(f"the report has no sweep of {hp!r}. Fix: plot one of "
                              f"{sorted({r.hp for r in report.results})}.")
    n = len(results)
    fig = new_figure("plotting the transfer check", CheckError, figsize=(5.2 * n, 8.0))
    from matplotlib import colormaps  # matplotlib is present: new_figure succeeded

    axes = fig.subplots(2, n, squeeze=False, gridspec_kw={"height_ratios": [3, 2]})
    cmap = colormaps["viridis"]
    y0, y1 = _ylim(results)
    axis = str(report.config.get("axis", "width"))
    for col, r in enumerate(results):
        _loss_panel(axes[0][col], r, cmap, (y0, y1), axis)
        _drift_panel(axes[1][col], r, axis)
    fig.suptitle(f"hyperparameter transfer of {hp}: " + ", ".join(
        f"{r.parametrization} {r.verdict.upper()}" for r in results), fontsize=12)
    return save_figure(fig, path)


def _loss_panel(ax: Any, r: ParamResult, cmap: Any, ylim: tuple[float, float], axis: str = "width") -> None:
    n_w = len(r.widths)
    for w, width in enumerate(r.widths):
        color = cmap(0.15 + 0.75 * w / max(n_w - 1, 1))
        mean = _optimum.mean_curve(r.losses[w])
        ok = np.isfinite(mean)
        ax.plot(r.x[ok], mean[ok], "-o", color=color, ms=3, lw=1.6, label=f"{axis} {width:g}")
        div = np.isinf(mean)
        if div.any():
            ax.plot(r.x[div], np.full(div.sum(), ylim[1]), "x", color=color, ms=6, clip_on=False)
        o = r.optima[w]
        if math.isfinite(o.x):
            y = _optimum.interp_curve(r.x, mean, o.x)
            y = y if math.isfinite(y) else o.loss
            ax.errorbar([o.x], [y], xerr=[[max(o.x - o.lo, 0)], [max(o.hi - o.x, 0)]], fmt="*", color=color,
                        ms=12, mec="black", mew=0.6, capsize=3, zorder=5)
    ax.set_ylim(*ylim)
    ax.set_xlabel(f"log2 {r.hp}")
    ax.set_ylabel("final validation loss (nats)")
    d = r.drift
    ax.set_title(f"{r.parametrization}: {r.verdict} -- drift {d.slope:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] oct/doubling",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", title="x: diverged", title_fontsize=7)


def _drift_panel(ax: Any, r: ParamResult, axis: str = "width") -> None:
    lw = np.log2(np.asarray(r.widths, dtype=float))
    xs = np.array([o.x for o in r.optima])
    lo = np.array([o.lo for o in r.optima])
    hi = np.array([o.hi for o in r.optima])
    ok = np.isfinite(xs)
    ax.errorbar(lw[ok], xs[ok], yerr=[np.maximum(xs[ok] - lo[ok], 0), np.maximum(hi[ok] - xs[ok], 0)], fmt="o",
                color="black", capsize=4, label="optimum (95% bootstrap CI)")
    edge = np.array([o.edge is not None for o in r.optima])
    if (edge & ok).any():
        ax.plot(lw[edge & ok], xs[edge & ok], "s", mfc="none", mec="red", ms=11, label="on grid edge")
    d = r.drift
    if math.isfinite(d.slope):
        grid = np.linspace(lw.min(), lw.max(), 20)
        ax.plot(grid, d.intercept + d.slope * grid, "-", color="tab:red",
                label=f"fit: {d.slope:+.2f} oct/doubling [{d.lo:+.2f}, {d.hi:+.2f}]")
    ax.axhspan(r.x[0], r.x[-1], color="0.93", zorder=0, label="grid range")
    if ok.any():
        ax.set_ylim(max(np.nanmin(lo[ok]) - 1.0, r.x[0] - 0.5), min(np.nanmax(hi[ok]) + 1.0, r.x[-1] + 0.5))
    ax.set_xticks(lw)
    ax.set_xticklabels([f"{w:g}" for w in r.widths])
    ax.set_xlabel(f"{axis} (log2 axis)")
    ax.set_ylabel(f"optimal log2 {r.hp}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
