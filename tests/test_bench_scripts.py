"""The side-by-side benchmark scripts in their --quick mode (CI smoke; slow: ~3 min together)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _script(name: str, out: Path, *extra: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / name), "--quick", "--out", str(out), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_bench_transfer_quick(tmp_path: Path) -> None:
    _script("bench_transfer.py", tmp_path, "--jobs", "2")  # the two models in two processes
    md = (tmp_path / "results.md").read_text()
    for case in ("mlp", "resglu"):
        data = json.loads((tmp_path / f"{case}.json").read_text())
        rows = {r["parametrization"]: r for r in data["rows"]}
        extra = {"mup_gains_freeze", "mup_gains_scaled"} if case == "resglu" else set()
        assert set(rows) == {"sp", "sp+fit", "mup", "mup+fit", "mup+fit power", "mup oracle", "mup_package"} | extra
        # the tool's default fit form: a power law under SP, converging under μP
        assert rows["sp+fit"]["form"] == "power" and rows["mup+fit"]["form"] == "converging"
        assert all(math.isfinite(r["regret_rel"]) for r in rows.values())
        assert all(math.isfinite(r["drift"]["slope"]) for n, r in rows.items() if n != "mup oracle")
        # SP's optimum moves with width and μP removes most of that: a broken rewrite or a
        # mis-wired runner (every row the same parametrization) fails here.
        assert rows["sp"]["drift"]["slope"] < -0.4
        assert abs(rows["mup"]["drift"]["slope"]) < 0.5 * abs(rows["sp"]["drift"]["slope"])
        assert abs(rows["mup_package"]["drift"]["slope"]) < 0.5 * abs(rows["sp"]["drift"]["slope"])
        png = (tmp_path / f"{case}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
        assert f"## {case}:" in md and (tmp_path / f"measured-{case}.json").exists()
    assert data["runs_trained"] < data["grid_runs"]


def test_bench_tuning_quick(tmp_path: Path) -> None:
    _script("bench_tuning.py", tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {r["row"]: r for r in data["rows"]}
    direct, proxy = rows["direct SP (gp)"], rows["hptransfer μP (gp)"]
    assert direct["tuned_at"] == 512 and proxy["tuned_at"] == 64
    # The proxy's trials cost less than the target's: 6 trials at width 64 plus one run at 512.
    assert proxy["flops"] < 0.5 * direct["flops"]
    assert proxy["runs"] == direct["runs"] + 1
    fit = rows["hptransfer μP (gp) + drift fit"]
    assert fit["drift_fit"] is not None and fit["runs"] > proxy["runs"]
    assert all(math.isfinite(r["target_loss"]) for r in rows.values())
    assert "| direct SP (gp) | 512 |" in (tmp_path / "results.md").read_text()


def test_bench_lr_form_short(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_lr_form.py"), "--steps", "5", "--no-zoo",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert all(r["mult_hpt_groups"] < 1e-5 < r["sp"] for r in rows)  # hptransfer's groups: the same run
    assert next(r["mult_one_lr"] for r in rows if r["opt"] == "SGD").startswith("refused")
    assert (tmp_path / "results.md").read_text().count("\n| mup") == sum(r["rule"] == "mup" for r in rows)
