"""The verdict of one swept HP: a grid too narrow, infinite regret (hptransfer.check._verdict)."""

from __future__ import annotations

import math

import pytest
from _helpers import LR_GRID, BowlRunner, bowl_check


def test_optimum_on_the_edge_is_grid_too_narrow_with_a_suggested_range():
    rep = bowl_check(grid={"lr": LR_GRID[:9]}, parametrizations=["sp"], expect={"sp": "fail"})
    r = rep.result("sp")
    assert r.verdict == "grid too narrow" and not rep.passed  # never a silent pass, not even a "fail"
    lo, hi = r.next_range
    assert lo == pytest.approx(LR_GRID[0]) and hi > LR_GRID[8]  # SP's optimum left the grid upwards
    assert any("grid too narrow" in s for s in r.reasons)


def test_proxy_optimum_diverging_at_the_widest_width_is_infinite_regret():
    rep = bowl_check(runner=BowlRunner({"sp": -2.0, "mup": 0.0}), widths=[64, 128, 256],
                 grid={"lr": [2.0 ** (k / 2) for k in range(-34, -11)]})
    sp = rep.result("sp")
    assert sp.regret == math.inf and sp.verdict == "fail"
    assert any("diverges" in s for s in sp.reasons)


class _Flat:
    """A loss that ignores the LR: seed noise alone places the optimum."""

    def __init__(self, salt: int) -> None:
        self.salt = salt

    def fingerprint(self) -> str:
        return f"flat{self.salt}"

    def __call__(self, parametrization, width, seed, hps):
        import numpy as np

        from hptransfer.training import TrainResult

        rng = np.random.default_rng([self.salt, int(width), seed, int(1000 * math.log2(hps["lr"])) % 100000])
        return TrainResult(val_loss=float(1.0 + rng.normal(0, 0.01)), steps=10, seconds=0.001)


def test_a_loss_that_ignores_the_lr_is_inconclusive_in_every_draw():
    # Before: PASS, FAIL or "grid too narrow" by the draw (the point estimate read noise as drift).
    verdicts = [bowl_check(runner=_Flat(salt), parametrizations=["mup"], expect={"mup": "pass"}, n_boot=100)
                .result("mup") for salt in range(6)]
    assert [r.verdict for r in verdicts] == ["inconclusive"] * 6
    assert all("does not depend on lr beyond seed noise" in r.reasons[0] for r in verdicts)


def test_a_drift_interval_wider_than_the_band_is_inconclusive_with_the_seeds_that_would_decide():
    from hptransfer.check._optimum import Drift
    from hptransfer.check._verdict import _undecided

    wide = Drift(slope=0.05, lo=-2.14, hi=1.22, shift=0.1, shift_lo=-4, shift_hi=4, intercept=0)
    why = _undecided(wide, 0.15, 2, "mup lr")
    assert "INCONCLUSIVE" in why and "About 251 seeds (now 2)" in why
    # decided: inside the band, outside it, or narrow enough for the point estimate
    for lo, hi in ((-0.1, 0.12), (0.3, 0.9), (-0.215, 0.017)):
        assert _undecided(Drift(slope=(lo + hi) / 2, lo=lo, hi=hi, shift=0, shift_lo=0, shift_hi=0, intercept=0),
                          0.15, 2, "mup lr") == ""
