"""check_grid end to end on a synthetic runner: SP fails and μP passes, expectations, bad input.

The synthetic runner (tests/_helpers.py) is a loss bowl whose optimum moves with width as SP's
or μP's would, so these tests exercise the sweep, the Optuna storage and the analysis in seconds.
"""

from __future__ import annotations

import pytest
from _helpers import LR_GRID, bowl_check

from hptransfer.errors import CheckError


def test_sp_fails_with_negative_drift_and_mup_passes():
    rep = bowl_check()
    sp, mup = rep.result("sp"), rep.result("mup")
    assert rep.passed
    assert sp.verdict == "fail" and sp.drift.slope == pytest.approx(-0.75, abs=0.1) and sp.drift.hi < 0
    assert mup.verdict == "pass" and abs(mup.drift.slope) < 0.1
    assert not (mup.drift.lo <= sp.drift.slope <= mup.drift.hi)
    assert sp.regret > 0.05 and mup.regret_rel < 0.01
    assert any("width 512" in r for r in sp.reasons)  # the failing width is named
    assert sp.n_diverged > 0
    assert rep.comparison() and all(c["excludes"] for c in rep.comparison() if c["interval_of"] == "mup")


def test_default_expectation_gates_every_parametrization():
    rep = bowl_check(expect=None)
    assert not rep.passed and [r.parametrization for r in rep.failing] == ["sp"]


@pytest.mark.parametrize("kw, match", [
    ({"widths": [64, 128]}, "at least 3"),
    ({"seeds": [0]}, "at least 2"),
    ({"grid": {"init_std": [0.5, 1, 2]}}, "learning rate is required"),
    ({"grid": {"lr": [0.1, 0.01, 0.001]}}, "increasing"),
    ({"grid": {"lr": LR_GRID, "beta1": [0.8, 0.9, 0.95]}}, "beta1"),
    ({"grid": {"lr": LR_GRID, "init_std": [0.5, 1, 2]}}, "fixed"),
    ({"expect": {"sgd": "pass"}}, "not checked"),
    ({"expect": {"mup": "maybe"}}, "maybe"),
])
def test_bad_input_raises_check_error_naming_the_field(kw, match):
    with pytest.raises(CheckError, match=match):
        bowl_check(**kw)


def test_workers_auto_is_one_per_core_with_a_storage_and_one_in_memory(monkeypatch) -> None:
    from hptransfer.check._check import resolve_workers
    from hptransfer.recipe import CheckSpec
    from hptransfer.recipe._spec import parse_section

    monkeypatch.setattr("os.cpu_count", lambda: 7)
    assert resolve_workers("auto", "journal:///tmp/x.journal") == 7
    assert resolve_workers("auto", "inmemory") == 1  # workers share a persistent storage
    assert resolve_workers(1, "journal:///tmp/x.journal") == 1  # and 1 still means one process
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert resolve_workers("auto", "journal:///tmp/x.journal") == 1
    with pytest.raises(CheckError, match="workers"):
        resolve_workers(0, "inmemory")
    assert CheckSpec().workers == "auto"
    problems: list = []
    assert parse_section(CheckSpec, {"workers": "auto"}, "check", problems).workers == "auto"
    assert parse_section(CheckSpec, {"workers": 3}, "check", problems).workers == 3
    assert not problems
    parse_section(CheckSpec, {"workers": "many"}, "check", problems)
    assert problems and problems[0][0] == "check.workers"
