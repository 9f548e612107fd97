"""The pytest helpers users put in their own suites: hptransfer.testing."""

from __future__ import annotations

import pytest
from _helpers import LR_GRID, BowlRunner

from hptransfer import CoordCheckResult, TransferReport, coord_check
from hptransfer.check import Tolerances
from hptransfer.check._check import check_grid
from hptransfer.models import mlp
from hptransfer.testing import assert_coord_check, assert_transfer


def _report(expect=None) -> TransferReport:
    return check_grid(BowlRunner({"sp": -0.75, "mup": 0.0}), widths=[64, 128, 256, 512], grid={"lr": LR_GRID},
                      seeds=[0, 1], parametrizations=["sp", "mup"], expect=expect, n_boot=100)


def test_assert_transfer_returns_a_passing_report():
    rep = _report({"sp": "fail", "mup": "pass"})
    assert assert_transfer(rep) is rep


def test_assert_transfer_names_parametrization_width_and_figure(tmp_path):
    with pytest.raises(AssertionError) as info:
        assert_transfer(_report(), plot_dir=tmp_path)
    msg = str(info.value)
    assert "sp lr: fail (expected pass)" in msg
    assert "width 512" in msg
    assert str(tmp_path / "transfer_lr.png") in msg
    assert (tmp_path / "transfer_lr.png").exists() and (tmp_path / "transfer_report.json").exists()
    assert "mup lr: " not in msg.split("\n")[1]  # only the failing parametrization heads the message


@pytest.mark.slow  # 11 s, a real check; the assertion helper itself is guarded by the two fast tests above
def test_assert_transfer_runs_the_check_itself(tmp_path):
    # A real check whose verdict is known: 3 steps leave lr 1e-2 best at every width (1e-4 barely
    # moves, 1 overshoots), and loose tolerances turn an interior optimum into a pass.
    kw = dict(widths=[16, 32, 64], grid={"lr": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]}, seeds=[0, 1], steps=3,
              batch_size=8, n_boot=50, tolerances=Tolerances(max_drift=10, max_regret=10, max_wider_worse=10),
              storage=str(tmp_path / "check.journal"))
    rep = assert_transfer("mlp", "classification", expect={"mup": "pass"}, **kw)
    assert isinstance(rep, TransferReport) and rep.result("mup").verdict == "pass"
    assert rep.result("mup").losses.shape == (3, 5, 2)
    with pytest.raises(AssertionError, match=r"mup lr: pass \(expected fail\)"):
        assert_transfer("mlp", "classification", expect={"mup": "fail"}, plot_dir=tmp_path / "fig", **kw)
    assert (tmp_path / "fig" / "transfer_lr.png").exists()


def _coord(parametrization: str) -> CoordCheckResult:
    return coord_check(mlp, widths=[32, 64, 128, 256], task="classification", parametrization=parametrization,
                       steps=2, seeds=(0,), lr=1e-2)


def test_assert_coord_check_passes_for_mup():
    res = assert_coord_check(mlp, widths=[32, 64, 128, 256], task="classification", steps=2, seeds=(0,))
    assert res.passed


def test_assert_coord_check_names_module_and_width_for_sp(tmp_path):
    res = _coord("sp")
    assert not res.passed
    with pytest.raises(AssertionError) as info:
        assert_coord_check(res, plot_dir=tmp_path)
    msg = str(info.value)
    module = res.failing[0][0]
    assert f"module {module!r}" in msg and "slope" in msg
    assert "steepest at width" in msg
    assert (tmp_path / "coord_check.png").exists() and str(tmp_path / "coord_check.png") in msg
