"""The coordinate check's figure (hptransfer.coord._plot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import PNG_SIGNATURE, gpt_coord, mlp_coord


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = gpt_coord("sp").plot(tmp_path / "sub" / "coord.png")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    ok = mlp_coord("mup").plot(tmp_path / "ok.png")
    assert ok.read_bytes()[:8] == PNG_SIGNATURE
