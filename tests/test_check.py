"""The transfer check: verdicts, grid handling, storage resume, JSON/JUnit outputs and the CLI.

Most tests use a synthetic runner (a loss bowl whose optimum moves with width as SP's or
μP's would), so they exercise the sweep, the Optuna storage and the analysis in seconds.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import pytest

from hptransfer import TransferReport, check_transfer
from hptransfer.check import Tolerances, check_grid
from hptransfer.cli import main
from hptransfer.errors import CheckError
from hptransfer.training import TrainResult

LR_GRID = [2.0 ** (k / 2) for k in range(-28, -11)]  # 2^-14 .. 2^-6, half-octave steps


@dataclass
class BowlRunner:
    """Loss = 1 - 0.01 log2(width) + 0.05 (log2 lr - opt)^2 with opt = -9 + drift * log2(width/64);
    SP drifts -0.75 octave per doubling, μP does not; diverges 3 octaves above the optimum."""

    drifts: dict
    noise: float = 0.002
    calls: int = 0
    penalty: float = math.log(10)

    def fingerprint(self) -> str:
        return repr(sorted(self.drifts.items()))

    def __call__(self, parametrization, width, seed, hps):
        self.calls += 1
        x = math.log2(hps["lr"])
        opt = -9.0 + self.drifts[parametrization] * math.log2(width / 64)
        if x > opt + 3:
            return TrainResult(diverged=True, reason="loss above 3 x its start", val_loss=math.inf)
        rng = np.random.default_rng([width, seed, int(1000 * x) % 100000])
        loss = 1.0 - 0.01 * math.log2(width) + 0.05 * (x - opt) ** 2 + rng.normal(0, self.noise)
        return TrainResult(val_loss=float(loss), steps=10, seconds=0.001)


def _check(runner=None, **kw) -> TransferReport:
    args = {"widths": [64, 128, 256, 512], "grid": {"lr": LR_GRID}, "seeds": [0, 1],
            "parametrizations": ["sp", "mup"], "expect": {"sp": "fail", "mup": "pass"}, "n_boot": 200}
    args.update(kw)
    return check_grid(runner or BowlRunner({"sp": -0.75, "mup": 0.0}), **args)


def test_sp_fails_with_negative_drift_and_mup_passes():
    rep = _check()
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
    rep = _check(expect=None)
    assert not rep.passed and [r.parametrization for r in rep.failing] == ["sp"]


def test_optimum_on_the_edge_is_grid_too_narrow_with_a_suggested_range():
    rep = _check(grid={"lr": LR_GRID[:9]}, parametrizations=["sp"], expect={"sp": "fail"})
    r = rep.result("sp")
    assert r.verdict == "grid too narrow" and not rep.passed  # never a silent pass, not even a "fail"
    lo, hi = r.next_range
    assert lo == pytest.approx(LR_GRID[0]) and hi > LR_GRID[8]  # SP's optimum left the grid upwards
    assert any("grid too narrow" in s for s in r.reasons)


def test_proxy_optimum_diverging_at_the_widest_width_is_infinite_regret():
    rep = _check(runner=BowlRunner({"sp": -2.0, "mup": 0.0}), widths=[64, 128, 256],
                 grid={"lr": [2.0 ** (k / 2) for k in range(-34, -11)]})
    sp = rep.result("sp")
    assert sp.regret == math.inf and sp.verdict == "fail"
    assert any("diverges" in s for s in sp.reasons)


def test_a_crashing_run_stops_the_check_and_missing_runs_never_pass(tmp_path):
    class Flaky(BowlRunner):
        def __call__(self, parametrization, width, seed, hps):
            if width == 256 and seed == 1 and hps["lr"] == LR_GRID[5]:
                raise RuntimeError("worker died")
            return super().__call__(parametrization, width, seed, hps)

    storage = str(tmp_path / "check.journal")
    with pytest.raises(RuntimeError):  # a broken training function is a bug, not a data point
        _check(runner=Flaky({"sp": -0.75, "mup": 0.0}), storage=storage)
    # What finished is kept; analysed as it stands, the hole is reported and cannot pass.
    from hptransfer.check._sweep import SweepData, SweepPlan
    from hptransfer.check._verdict import analyse

    plan = SweepPlan("lr", tuple(LR_GRID), (64, 128, 256), (0, 1), ("mup",))
    full = _check(parametrizations=["mup"], expect=None, widths=[64, 128, 256]).results[0].losses.copy()
    full[1, 8, 0] = math.nan
    r = analyse(SweepData(plan, {"mup": full}, 0.0, 1, "s"), "mup", Tolerances())
    assert r.verdict == "fail" and r.n_missing == 1 and "missing" in r.reasons[0]


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
        _check(**kw)


def test_tolerances_validate():
    with pytest.raises(CheckError, match="max_drift"):
        Tolerances(max_drift=0)


def test_journal_storage_resumes_without_rerunning(tmp_path):
    storage = str(tmp_path / "check.journal")
    first = BowlRunner({"sp": -0.75, "mup": 0.0})
    rep1 = _check(runner=first, storage=storage, widths=[64, 128, 256], grid={"lr": LR_GRID[:12]})
    assert first.calls == 3 * 12 * 2 * 2
    again = BowlRunner({"sp": -0.75, "mup": 0.0})
    rep2 = _check(runner=again, storage=storage, widths=[64, 128, 256], grid={"lr": LR_GRID[:12]})
    assert again.calls == 0
    assert rep1.studies == rep2.studies
    assert rep2.result("mup").drift.slope == pytest.approx(rep1.result("mup").drift.slope)


def test_json_report_is_strict_json_with_the_numbers(tmp_path):
    rep = _check()
    text = rep.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    json.dumps(data, allow_nan=False)  # no NaN/Infinity tokens
    assert json.loads(text)["passed"] is True
    sp = next(r for r in data["results"] if r["parametrization"] == "sp")
    assert sp["verdict"] == "fail" and sp["drift"]["slope"] < 0 and len(sp["drift"]["ci95"]) == 2
    assert len(sp["optima"]) == 4 and sp["optima"][0]["width"] == 64
    assert np.asarray(sp["losses"], dtype=float).shape == (4, len(LR_GRID), 2)


def test_junit_xml_has_a_failure_naming_width_and_hp(tmp_path):
    rep = _check(expect=None)
    rep.junit_xml(tmp_path / "j.xml")
    root = ET.parse(tmp_path / "j.xml").getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"transfer[sp:lr]", "transfer[mup:lr]"}
    fail = cases["transfer[sp:lr]"].find("failure")
    assert fail is not None and "width 512" in fail.get("message") and "lr" in fail.get("message")
    assert cases["transfer[mup:lr]"].find("failure") is None


def test_plot_and_summary(tmp_path):
    rep = _check()
    path = rep.plot(tmp_path / "fig.png")
    assert path.stat().st_size > 10_000
    text = rep.summary()
    assert "PASSED" in text and "sp" in text and "mup" in text


def test_check_transfer_trains_a_real_model_quickly():
    rep = check_transfer("mlp", "classification", widths=[16, 32, 64], grid={"lr": [1e-3, 1e-2, 1e-1]},
                         seeds=[0, 1], steps=5, batch_size=16, n_boot=50, expect={"mup": "any"})
    r = rep.result("mup")
    assert r.losses.shape == (3, 3, 2) and np.isfinite(r.losses).any()
    assert rep.passed  # expect=any: reported, not gated


_RECIPE = """
name: tiny
model: {name: mlp, kwargs: {depth: 3}}
task: {name: classification, kwargs: {n_train: 256, n_val: 128}}
parametrization: {name: mup, base_width: 8}
optimizer: {name: adam}
schedule: {decay: constant}
train: {batch_size: 8, steps: 3}
widths: {proxy: 8, target: 32}
search: {lr: {type: log_float, low: 0.001, high: 0.1}}
check:
  seeds: [0, 1]
  lr: {low: 0.001, high: 0.1, per_octave: 0.5}
"""


def test_cli_writes_json_and_junit_and_exits_0_or_1(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(_RECIPE)
    code = main(["check", str(recipe), "--compare", "sp,mup", "--out", str(tmp_path / "run"), "-q",
                 "--json", str(tmp_path / "r.json"), "--junit-xml", str(tmp_path / "j.xml"),
                 "--plot", str(tmp_path / "f.png")])
    out = capsys.readouterr().out
    assert code in (0, 1) and "transfer check" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["config"]["widths"] == [8, 16, 32] and {r["parametrization"] for r in data["results"]} == {"sp", "mup"}
    assert code == (0 if data["passed"] else 1)
    assert ET.parse(tmp_path / "j.xml").getroot().tag == "testsuites"
    assert (tmp_path / "f.png").exists()
    assert (tmp_path / "run" / "study.journal").exists()  # the tuner's storage


@pytest.mark.parametrize("extra, match", [
    (["--set", "check.seeds=[0]"], "check.seeds"),
    (["--expect", "sp"], "PARAM=VERDICT"),
    (["--compare", "mup", "--expect", "sp=fail"], "--compare"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, extra, match):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(_RECIPE)
    code = main(["check", str(recipe), "--out", str(tmp_path / "run"), "-q", *extra])
    assert code == 2
    assert match in capsys.readouterr().err


@pytest.mark.slow
def test_two_worker_processes_fill_the_grid_once(tmp_path):
    storage = str(tmp_path / "check.journal")
    rep = _check(storage=storage, workers=2, widths=[64, 128, 256], grid={"lr": LR_GRID[:12]})
    for r in rep.results:
        assert r.n_missing == 0
    again = BowlRunner({"sp": -0.75, "mup": 0.0})
    _check(runner=again, storage=storage, widths=[64, 128, 256], grid={"lr": LR_GRID[:12]})
    assert again.calls == 0


def test_several_hps_are_swept_one_at_a_time_with_the_others_fixed(tmp_path):
    rep = check_transfer("mlp", "classification", widths=[16, 32, 64], seeds=[0, 1], steps=3, batch_size=8,
                         grid={"lr": [1e-3, 1e-2, 1e-1], "output_mult": [0.5, 1.0, 2.0], "init_std": [0.5, 1.0, 2.0]},
                         fixed={"lr": 1e-2}, n_boot=20, expect={"mup": "any"})
    assert [r.hp for r in rep.results] == ["lr", "output_mult", "init_std"]
    assert all(r.losses.shape == (3, 3, 2) for r in rep.results)
    paths = [rep.plot(tmp_path / f"{hp}.png", hp=hp) for hp in ("lr", "output_mult", "init_std")]
    assert all(p.exists() for p in paths)


def test_a_run_that_raised_is_retried_on_the_next_check(tmp_path):
    class FlakyOnce(BowlRunner):
        failed = False

        def __call__(self, parametrization, width, seed, hps):
            if not FlakyOnce.failed and width == 128 and seed == 1 and hps["lr"] == LR_GRID[5]:
                FlakyOnce.failed = True
                raise RuntimeError("out of memory")
            return super().__call__(parametrization, width, seed, hps)

    storage = str(tmp_path / "check.journal")
    kw = {"parametrizations": ["mup"], "expect": None, "widths": [64, 128, 256], "storage": storage}
    with pytest.raises(RuntimeError):
        _check(runner=FlakyOnce({"mup": 0.0}), **kw)
    rerun = FlakyOnce({"mup": 0.0})
    rep = _check(runner=rerun, **kw)  # the FAILed grid point is queued again, not skipped forever
    assert rep.results[0].n_missing == 0 and rep.passed
    assert 1 <= rerun.calls < 3 * len(LR_GRID) * 2  # resumed: only what was not COMPLETE ran
