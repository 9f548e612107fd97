"""The fitted drift correction (transfer.drift: fit) on objectives whose optimum moves by a known slope."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

import hptransfer
from hptransfer.errors import RecipeError
from hptransfer.recipe import parse_recipe
from hptransfer.targets._drift import fit_drift
from hptransfer.targets._report import _drift_lines

USER_CODE = '''
import math, random

SLOPE = {slope!r}
NOISE = {noise!r}
CONVERGING = {converging!r}

def train(hp, *, width, seed, report):
    # A bowl in log2(lr) whose centre moves SLOPE octaves per width doubling from 2**-6 at width 16
    # (power law), or, CONVERGING, moves by SLOPE * (16 / width - 1) towards its limit -6 - SLOPE.
    centre = -6.0 + (SLOPE * (16 / width - 1) if CONVERGING else SLOPE * math.log2(width / 16))
    loss = 1.0 + 0.1 * (math.log2(hp["lr"]) - centre) ** 2
    loss += NOISE * random.Random(hash((width, round(math.log2(hp["lr"]), 3), seed))).gauss(0.0, 1.0)
    for step in range(3):
        report(step, loss + 0.1 / (step + 1))
    return loss
'''


def _recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slope: float, noise: float = 0.0,
            converging: bool = False, parametrization: str = "mup", **transfer: object):
    module = f"drift_obj_{abs(hash((slope, noise, converging))) % 10**8}"
    (tmp_path / f"{module}.py").write_text(USER_CODE.format(slope=slope, noise=noise, converging=converging))
    monkeypatch.syspath_prepend(str(tmp_path))
    return parse_recipe({
        "name": module, "out": str(tmp_path / "run"),
        "model": {"name": "mlp"}, "task": {"train_fn": f"{module}:train"},
        "train": {"batch_size": 8, "steps": 3},
        "widths": {"proxy": 16, "target": 1024},
        "search": {"lr": {"type": "log_float", "low": 2.0 ** -12, "high": 2.0 ** -1}},
        "tune": {"trials": 6, "sampler": "random"},
        "parametrization": {"name": parametrization},
        "transfer": {"drift": "fit", **transfer},
    })


@pytest.mark.parametrize("slope", [-0.3, 0.0, 0.2])
def test_a_known_slope_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slope: float) -> None:
    rec = _recipe(tmp_path, monkeypatch, slope, fit_form="power")
    fit = fit_drift(rec, {"lr": 2.0 ** -6}, 1024)
    # each width walks from its predicted optimum: fewer runs than the 5-point grid at every width
    assert fit.widths == [16, 32, 64] and fit.runs <= fit.grid_runs == 5 * 3 * 2 and fit.form == "power"
    assert fit.slope == pytest.approx(slope, abs=0.05)
    assert fit.applied and fit.reason == ""
    # Extrapolated over 6 doublings to width 1024.
    assert math.log2(fit.lr_target) == pytest.approx(-6.0 + 6 * slope, abs=6 * 0.05)
    if slope == 0.0:
        assert fit.correction_octaves == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("amplitude", [0.6, 0.0])
def test_a_converging_optimum_is_extrapolated_to_its_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           amplitude: float) -> None:
    # The optimum moves by amplitude * (16 / width - 1): -0.3 octave by width 32, -0.45 by 64,
    # -0.59 by 1024. A power law through 16..64 (-0.225 per doubling) would put it at -1.35.
    rec = _recipe(tmp_path, monkeypatch, amplitude, converging=True)
    fit = fit_drift(rec, {"lr": 2.0 ** -6}, 1024)
    assert fit.form == "converging" and fit.applied
    expected = -amplitude * (1 - 16 / 1024)
    assert fit.correction_octaves == pytest.approx(expected, abs=0.05)
    assert math.log2(fit.lr_target) == pytest.approx(-6.0 + expected, abs=0.05)
    # measured over the fit widths 16..64 (what the fallback judges), not averaged to the target
    assert fit.slope == pytest.approx(-amplitude * (1 - 16 / 64) / 2, abs=0.02)
    assert fit.correction_lo <= fit.correction_octaves <= fit.correction_hi
    near = fit_drift(rec, {"lr": 2.0 ** -6}, 128)  # same sweep (resumed): same measured drift and verdict
    assert (near.slope, near.lo, near.hi, near.applied) == (fit.slope, fit.lo, fit.hi, fit.applied)
    assert fit.at(256).correction_octaves == pytest.approx(-amplitude * (1 - 16 / 256), abs=0.05)
    if amplitude:
        # same objective, same study: the sweep's runs are reused
        power = fit_drift(_recipe(tmp_path, monkeypatch, amplitude, converging=True, fit_form="power"),
                          {"lr": 2.0 ** -6}, 1024)
        assert power.correction_octaves < expected - 0.5  # the straight line overshoots


def test_auto_form_is_power_under_sp_and_converging_otherwise(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from hptransfer.targets._drift import fit_form

    assert fit_form(_recipe(tmp_path, monkeypatch, 0.0, parametrization="sp")) == "power"
    assert fit_form(_recipe(tmp_path, monkeypatch, 0.0)) == "converging"
    assert fit_form(_recipe(tmp_path, monkeypatch, 0.0, parametrization="sp", fit_form="converging")) == "converging"


@pytest.mark.parametrize("form", ["power", "converging"])
def test_a_noisy_fit_falls_back_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    # Noise of sd 0.2 nats: twice the bowl's rise one octave from its centre. At sd 0.05 and 0.1 the
    # bracketed sweeps give intervals inside +/-0.3 and the fit applies (under-correcting -0.3 by about
    # a quarter); the fixed 5-point grid refused those only because width 64's optimum hit its edge.
    rec = _recipe(tmp_path, monkeypatch, -0.3, noise=0.2, fit_form=form)
    fit = fit_drift(rec, {"lr": 2.0 ** -6}, 1024)
    assert not fit.applied and fit.lr_target == fit.lr_proxy and fit.correction_octaves == 0.0
    assert "interval" in fit.reason or "edge" in fit.reason
    forced = fit_drift(_recipe(tmp_path, monkeypatch, -0.3, noise=0.2, fit_force=True, fit_form=form),
                       {"lr": 2.0 ** -6}, 1024)
    assert forced.applied and forced.reason.startswith("forced despite")


def test_transfer_writes_the_corrected_lr_and_the_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _recipe(tmp_path, monkeypatch, -0.25, fit_form="power")
    res = hptransfer.tune(rec, quiet=True)
    (target,) = hptransfer.transfer(rec, quiet=True)
    cfg = yaml.safe_load(target.path.read_text())
    d = cfg["transfer"]["drift"]
    assert d["applied"] and d["slope"] == pytest.approx(-0.25, abs=0.05) and d["target_width"] == 1024
    assert cfg["transfer"]["proxy_values"]["lr"] == pytest.approx(res.best_values["lr"])
    # the function decides its optimizer (no `optimizer:` section): the corrected LR is handed to it in `hp`
    assert cfg["spec"]["optimizer"] is None
    assert cfg["spec"]["extra"]["lr"] == pytest.approx(res.best_values["lr"] * 2.0 ** d["correction_octaves"])
    assert d["correction_octaves"] == pytest.approx(6 * d["slope"])


def test_fit_settings_are_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for transfer, field in (({"fit_widths": [32]}, "transfer.fit_widths"),
                            ({"fit_widths": [32, 2048]}, "transfer.fit_widths"),
                            ({"fit_seeds": [0]}, "transfer.fit_seeds")):
        with pytest.raises(RecipeError) as info:
            _recipe(tmp_path, monkeypatch, 0.0, **transfer)
        assert field in [p for p, _ in info.value.problems]


def test_run_writes_the_converging_fit_to_target_and_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # μP's default form end to end: tune, fit, transfer, summary.md
    rec = _recipe(tmp_path, monkeypatch, 0.6, converging=True)
    result = hptransfer.run(rec, quiet=True)
    cfg = yaml.safe_load((rec.run_dir / "target.yaml").read_text())
    d = cfg["transfer"]["drift"]
    assert d["form"] == "converging" and d["applied"]
    assert d["correction_octaves"] == pytest.approx(-0.6 * (1 - 16 / 1024), abs=0.05)
    assert cfg["spec"]["extra"]["lr"] == pytest.approx(cfg["transfer"]["proxy_values"]["lr"]
                                                           * 2.0 ** d["correction_octaves"])
    summary = (rec.run_dir / "summary.md").read_text()
    assert "## Drift correction" in summary and "converging curve" in summary and result is not None


def test_an_optimum_that_leaves_the_local_grid_is_bracketed_and_corrected(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """-0.5 octave per doubling: at 4x the proxy the optimum is an octave below the tuned LR, at the edge of the
    5-point grid centred on it, where the fit used to give up ("sits at the edge of the local LR grid")."""
    rec = _recipe(tmp_path, monkeypatch, -0.5, noise=0.002, fit_form="power")
    fit = fit_drift(rec, {"lr": 2.0 ** -6}, 1024)
    assert fit.applied, fit.reason
    assert fit.slope == pytest.approx(-0.5, abs=0.05)
    assert fit.correction_octaves == pytest.approx(-0.5 * 6, abs=0.1)  # six doublings from 16 to 1024
    # at 4x the optimum is an octave below the tuned LR: on the local grid's edge, bracketed by a point below
    assert fit.optima_log2[-1] == pytest.approx(-7.0, abs=0.05) and min(fit.grid) < 2.0 ** -7.5
    d = fit.to_dict()
    assert d["runs_vs_fixed_grid"] == fit.runs - fit.grid_runs != 0
    more = "more" if fit.runs > fit.grid_runs else "fewer"
    assert f"Extra compute: {fit.runs} runs ({abs(fit.runs - fit.grid_runs)} {more} than the {fit.grid_runs} of a " \
           "fixed local grid: bracketing)" in "\n".join(_drift_lines(d, 1e12))
