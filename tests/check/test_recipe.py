"""The project's own regression gate: check_recipe on the MLP recipe, where μP must pass and SP must fail.

Run alone with ``pytest -m gate`` (about a minute on one CPU core). A change that breaks the
parametrization (μP drifts) or the check itself (it can no longer tell SP from μP) fails it.
"""

from __future__ import annotations

import pytest
from _helpers import ROOT

from hptransfer.check import check_recipe
from hptransfer.recipe import load_recipe
from hptransfer.testing import assert_transfer

#: Small but sharp: Adam with a constant LR (a decaying schedule blurs the optimum), 150 steps,
#: widths 128..512 (4x; at width 64 and 150 steps μP's optimum sits 0.3 octave higher, a
#: finite-width effect that costs ~60% of the regret tolerance), whole-octave LR steps
#: 2^-12 .. 2^-6 that hold both SP's and μP's optima.
GATE_OVERRIDES = [
    "optimizer.name=adam", "schedule.warmup=0.0", "schedule.decay=constant",
    "check.widths=[128, 256, 512]", "check.seeds=[0, 1]",
    "check.lr={low: 0.000244140625, high: 0.015625, per_octave: 1}",
    "check.steps=150", "check.batch_size=32", "check.bootstrap=300",
]


@pytest.mark.gate
def test_mlp_recipe_mup_passes_and_sp_fails(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "mlp_quickstart.yaml", [*GATE_OVERRIDES, f"out={tmp_path}"])
    report = check_recipe(recipe, compare=["sp", "mup"], expect={"sp": "fail", "mup": "pass"})
    print(report.summary())  # shown with -rP or -s: the numbers behind the gate
    assert_transfer(report, plot_dir=tmp_path)
    sp, mup = report.result("sp"), report.result("mup")
    assert sp.drift.hi < 0, "SP's optimal LR should fall with width"
    assert not (mup.drift.lo <= sp.drift.slope <= mup.drift.hi), "μP's drift interval should exclude SP's drift"


@pytest.mark.slow  # 11 s of real runs at 3 depths; the depth axis's fast guards: tests/coord/test_builders.py
def test_check_along_depth_sweeps_depths_at_one_width(tmp_path):
    """``--axis depth``: the points are depths at the smallest proxy width, and the runs really are that deep."""
    from hptransfer.check._recipe import check_depths
    from hptransfer.errors import CheckError
    from hptransfer.recipe import parse_recipe

    data = {"name": "deep", "model": {"name": "gpt", "kwargs": {"n_head": 2}},
            "task": {"name": "charlm", "kwargs": {"block_size": 8}}, "parametrization": {"name": "completep"},
            "train": {"batch_size": 4, "steps": 3}, "widths": {"proxy": 16, "target": 32},
            "depths": {"proxy": 1, "target": 4},
            "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}},
            "check": {"lr": {"low": 1e-2, "high": 4e-2, "per_octave": 1}, "bootstrap": 50}, "out": str(tmp_path)}
    recipe = parse_recipe(data)
    assert check_depths(recipe) == [1, 2, 4]
    report = check_recipe(recipe, axis="depth", expect={"completep": "any"})
    r = report.result("completep")
    assert [o.width for o in r.optima] == [1, 2, 4] and report.config["axis"] == "depth"
    assert report.config["width"] == 16 and report.summary().splitlines()[0].count("depths 1, 2, 4")
    assert len({round(float(v), 6) for v in r.losses[:, 0, 0]}) == 3  # three depths, three different models
    with pytest.raises(CheckError, match="depths"):
        check_recipe(parse_recipe({k: v for k, v in data.items() if k not in ("depths", "parametrization")}),
                     axis="depth")
