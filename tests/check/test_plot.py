"""The check's figure (hptransfer.check._plot)."""

from __future__ import annotations

from _helpers import bowl_check


def test_plot(tmp_path):
    rep = bowl_check()
    path = rep.plot(tmp_path / "fig.png")
    assert path.stat().st_size > 10_000


def test_every_widths_best_point_stays_in_view():
    """A narrow width far worse than the others (SP at width 16) keeps its minimum inside the y-range;
    the zoom on the basins (35th percentile of all losses) used to cut it off."""
    import types

    import numpy as np

    from hptransfer.check._plot import _ylim

    x = np.linspace(-10, -2, 17)
    bowl = (x + 6.0) ** 2 / 20
    curves = [2.0 + bowl, 2.05 + bowl, 2.1 + bowl, 3.4 + bowl]  # the last width's best is 3.4 nats
    r = types.SimpleNamespace(widths=[64, 128, 256, 16], losses=np.stack([c[:, None] for c in curves]))
    lo, hi = _ylim([r])
    assert lo < 2.0 and hi > 3.4 * 1.01
