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
