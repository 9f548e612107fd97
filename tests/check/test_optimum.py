"""Optimum estimation, bootstrap intervals and the drift fit (pure numpy, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hptransfer.check import _optimum


def _bowl(x: np.ndarray, opt: float, curv: float = 0.05, floor: float = 1.0) -> np.ndarray:
    return floor + curv * (x - opt) ** 2


def test_vertex_recovers_parabola_minimum_on_uneven_grid():
    x = np.array([-10.0, -9.0, -8.5, -7.0, -6.0])
    xv, idx, edge = _optimum.vertex(x, _bowl(x, -8.3))
    assert edge is None and idx == 2
    assert xv == pytest.approx(-8.3, abs=1e-9)


def test_vertex_stays_within_half_a_step_of_the_argmin():
    x = np.arange(-12.0, -4.0, 0.5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        y = rng.normal(size=x.size)
        xv, idx, edge = _optimum.vertex(x, y)
        if edge is None:
            assert x[idx - 1] <= xv <= x[idx + 1]


def test_vertex_flags_edges_and_handles_divergence():
    x = np.arange(5.0)
    assert _optimum.vertex(x, np.array([1.0, 2, 3, 4, 5]))[2] == "low"
    assert _optimum.vertex(x, np.array([5.0, 4, 3, 2, 1]))[2] == "high"
    # A diverged neighbour: no interpolation, stay on the argmin.
    xv, idx, edge = _optimum.vertex(x, np.array([3.0, 2.0, 1.0, math.inf, math.inf]))
    assert (xv, idx, edge) == (2.0, 2, None)
    assert _optimum.vertex(x, np.full(5, math.inf))[1] == -1


def test_mean_curve_counts_any_diverged_seed_and_ignores_missing():
    losses = np.array([[1.0, 3.0], [1.0, math.inf], [math.nan, 2.0], [math.nan, math.nan]])
    out = _optimum.mean_curve(losses)
    assert out[0] == 2.0 and out[1] == math.inf and out[2] == 2.0 and math.isnan(out[3])


def test_interp_curve_linear_in_log2_and_inf_next_to_divergence():
    x = np.array([0.0, 1.0, 2.0])
    y = np.array([1.0, 3.0, math.inf])
    assert _optimum.interp_curve(x, y, 0.5) == pytest.approx(2.0)
    assert _optimum.interp_curve(x, y, 1.0) == 3.0
    assert _optimum.interp_curve(x, y, 1.5) == math.inf
    assert math.isnan(_optimum.interp_curve(x, y, 3.0))


def _synthetic(slope: float, noise: float, n_seeds: int = 3, widths=(64, 128, 256, 512, 1024), seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.arange(-14.0, -5.5, 0.5)
    lw = np.log2(np.asarray(widths, dtype=float))
    losses = np.empty((len(widths), x.size, n_seeds))
    for w, l2 in enumerate(lw):
        opt = -9.0 + slope * (l2 - lw[0])
        for s in range(n_seeds):
            # Per-seed shift of the whole curve (correlated across LR) plus point noise.
            losses[w, :, s] = _bowl(x, opt + rng.normal(0, noise)) + rng.normal(0, 0.002, x.size)
    return np.asarray(widths, dtype=float), x, losses


@pytest.mark.parametrize("slope", [-0.75, 0.0])
def test_estimate_recovers_drift_with_an_interval_that_covers_it(slope):
    widths, x, losses = _synthetic(slope, noise=0.1)
    optima, drift = _optimum.estimate(widths, x, losses, n_boot=300)
    assert drift.lo <= slope <= drift.hi
    assert abs(drift.slope - slope) < 0.15
    assert drift.hi - drift.lo < 0.6
    assert all(o.lo <= o.x <= o.hi for o in optima)
    assert drift.shift == pytest.approx(optima[-1].x - optima[0].x)


def test_estimate_is_reproducible_and_separates_sp_from_mup_like_drift():
    w, x, sp = _synthetic(-0.75, noise=0.1)
    _, _, mup = _synthetic(0.0, noise=0.1, seed=1)
    a = _optimum.estimate(w, x, mup, n_boot=200)[1]
    b = _optimum.estimate(w, x, mup, n_boot=200)[1]
    assert (a.lo, a.hi) == (b.lo, b.hi)
    sp_drift = _optimum.estimate(w, x, sp, n_boot=200)[1]
    assert not (a.lo <= sp_drift.slope <= a.hi)


def test_estimate_with_an_all_diverged_width_gives_nan_drift():
    widths, x, losses = _synthetic(0.0, noise=0.05, widths=(64, 128, 256))
    losses[2] = math.inf
    optima, drift = _optimum.estimate(widths, x, losses, n_boot=50)
    assert optima[2].index == -1 and math.isnan(drift.slope)
