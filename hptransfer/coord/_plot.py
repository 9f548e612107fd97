"""Coordinate-check figure: one panel per step, activation row and update row."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._io import new_figure, save_figure
from ..errors import CoordCheckError
from ._result import ACT, UPD, fmt

if TYPE_CHECKING:
    from ._result import CoordCheckResult

__all__ = ["plot_result"]


def plot_result(result: CoordCheckResult, path: Path, *, max_labels: int = 8) -> Path:
    """Write ``result`` as a PNG at ``path`` (see :meth:`CoordCheckResult.plot`)."""
    n = len(result.steps)
    fig = new_figure("CoordCheckResult.plot", CoordCheckError, figsize=(min(3.6 * n, 26), 7.2))
    from matplotlib import colormaps  # matplotlib is present: new_figure succeeded

    path = Path(path)
    axes = fig.subplots(2, n, squeeze=False)
    x = np.log2(np.asarray(result.widths, dtype=float))
    fails = {(m, t, k): s for m, t, k, s in result.failing}
    palette = colormaps["tab20"]
    # One colour per failing module across all panels, in worst-first order.
    colour = {m: palette(i % 20) for i, m in enumerate(dict.fromkeys(m for m, *_ in result.failing))}
    for row, kind in enumerate((ACT, UPD)):
        for col, step in enumerate(result.steps):
            ax = axes[row][col]
            if kind == UPD and step == 0:
                ax.axis("off")
                ax.text(0.5, 0.5, "update statistic\nmean |h_t - h_0|\nis 0 at init\n\ngrey: passing modules\n"
                        "colour: failing (slope)", ha="center", va="center", color="0.35", fontsize=8,
                        transform=ax.transAxes)
                continue
            bad = sorted((m for m in result.modules if (m, step, kind) in fails),
                         key=lambda m: -abs(fails[(m, step, kind)]))
            for m in result.modules:
                y = np.asarray(result.mean_stat(m, step, kind))
                if m not in bad and np.all(y > 0) and np.all(np.isfinite(y)):
                    ax.plot(x, y, color="0.7", lw=0.8, zorder=1)
            for m in bad[:max_labels]:
                y = np.asarray(result.mean_stat(m, step, kind))
                ok = np.isfinite(y) & (y > 0)
                if not ok.any():
                    continue
                ax.plot(x[ok], y[ok], color=colour[m], lw=2.2, marker="o", ms=3, zorder=3,
                        label=f"{m} ({fmt(fails[(m, step, kind)])})")
            if bad:
                ax.legend(fontsize=6, loc="best", framealpha=0.85, title=f"failing ({len(bad)})",
                          title_fontsize=6)
            ax.set_yscale("log")
            stat = "mean |h|" if kind == ACT else "mean |h_t - h_0|"
            ax.set_title(f"step {step}: {stat}", fontsize=9)
            ax.set_xticks(x)
            ax.set_xticklabels([f"{w:g}" for w in result.widths], fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_xlabel("width (log2 axis)", fontsize=8)
    verdict = "passed" if result.passed else f"FAILED: {len({m for m, *_ in result.failing})} module(s)"
    fig.suptitle(f"coordinate check: {result.parametrization}, {result.optimizer} lr={result.lr:g} -- {verdict}",
                 fontsize=11)
    return save_figure(fig, path)

