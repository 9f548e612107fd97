"""The check's figure (hptransfer.check._plot)."""

from __future__ import annotations

from _helpers import bowl_check


def test_plot(tmp_path):
    rep = bowl_check()
    path = rep.plot(tmp_path / "fig.png")
    assert path.stat().st_size > 10_000
