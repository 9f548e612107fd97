"""The coordinate check's analysis: per-module slopes against width and the verdict, from the raw
statistics that :mod:`._coord` records (one record per width, seed, step and module call)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._eps import eps_cause
from ._probe import LOGITS_SUFFIX
from ._result import ACT, READOUT_DECAY, UPD, CoordCheckResult

__all__ = ["analyse_coords"]


def analyse_coords(
    records: list[dict[str, Any]],
    order: list[str],
    widths: list[float],
    seeds: list[int],
    steps: int,
    tol_grow: float,
    tol_vanish: float,
    *,
    parametrization: str,
    optimizer: str,
    lr: float,
    capped: dict[str, dict[str, float]] | None = None,
) -> CoordCheckResult:
    """Fit the slopes and decide the verdict from raw records (``capped``: parameters Adam's eps
    swamps, named in ``extra["eps_capped"]`` where their module's updates vanish)."""
    # (module, step, width) -> list of (act, update) over seeds
    table: dict[tuple[str, int, float], list[tuple[float, float]]] = {}
    for r in records:
        table.setdefault((r["module"], r["step"], r["width"]), []).append((r["act"], r["update"]))
    # Only modules seen at every width and seed can be fitted; a model whose module set
    # changes with width has no coordinate to compare for the others.
    modules = [m for m in order if all(len(table.get((m, 0, w), ())) == len(seeds) for w in widths)]
    fixed, routed = _sizes(records, modules)
    slopes: dict[str, list[float]] = {}
    upd_slopes: dict[str, list[float]] = {}
    failing: list[tuple[float, tuple[str, int, str, float]]] = []  # (excess over tolerance, entry)
    unmeasured: dict[str, str] = {}  # module -> which statistic could not be compared at some step
    # A routed module called several times per forward (one expert module applied to each expert's
    # weights in turn, as DBRX does): its k-th call is whichever expert got tokens k-th, another one
    # at each width and step, so neither statistic of a call follows one coordinate. Their sum, the
    # parent module's output, is judged.
    calls = {m for m in routed if "#" in m or any(o.startswith(m + "#") for o in modules)}
    for m in modules:
        if m in calls:
            slopes[m], upd_slopes[m] = [math.nan] * (steps + 1), [math.nan] * (steps + 1)
            unmeasured[m] = "routed calls"
            continue
        slopes[m], upd_slopes[m] = _fit_module(m, table, widths, steps, routed=m in routed, fixed=m in fixed,
                                               tol_grow=tol_grow, tol_vanish=tol_vanish, failing=failing,
                                               unmeasured=unmeasured)
    failing.sort(key=lambda f: (-f[0], f[1][1], f[1][0]))
    return CoordCheckResult(
        passed=not failing,
        widths=widths,
        steps=list(range(steps + 1)),
        modules=modules,
        slopes=slopes,
        update_slopes=upd_slopes,
        stats=[r for r in records if r["module"] in slopes],
        failing=[f for _, f in failing],
        tolerances={"grow": tol_grow, "vanish": tol_vanish},
        fixed_size=fixed,
        parametrization=parametrization,
        optimizer=optimizer,
        lr=lr,
        extra={"seeds": list(seeds), "eps_capped": eps_cause([f for _, f in failing], capped or {}),
               "unmeasured": unmeasured},
    )


def _fit_module(m: str, table: dict[tuple[str, int, float], list[tuple[float, float]]], widths: list[float],
                steps: int, *, routed: bool, fixed: bool, tol_grow: float, tol_vanish: float,
                failing: list[tuple[float, tuple[str, int, str, float]]],
                unmeasured: dict[str, str]) -> tuple[list[float], list[float]]:
    """One module's activation and update slopes per step; appends what fails to ``failing`` and
    what could not be measured to ``unmeasured``."""
    x = np.log2(np.asarray(widths, dtype=float))

    def fit(t: int, i: int) -> float:  # i: 0 activation, 1 update; NaN where not measured
        values = [_seed_mean([rec[i] for rec in table.get((m, t, w), ())]) for w in widths]
        slope = _slope(x, values)
        if math.isnan(slope) and any(math.isnan(v) for v in values):
            if not routed:  # an aligned module empty at some widths only: no coordinate to compare, fail
                return math.inf
            unmeasured.setdefault(m, UPD if i else ACT)
        return slope

    acts, upds = [], []
    for t in range(steps + 1):
        s = fit(t, 0)
        acts.append(s)
        if s > tol_grow:
            failing.append((s - tol_grow, (m, t, ACT, s)))
        if t == 0 or LOGITS_SUFFIX in m or routed:  # the attention scale does not train
            upds.append(math.nan)
            if t and routed:
                unmeasured.setdefault(m, UPD)
            continue
        u = fit(t, 1)
        upds.append(u)
        # A fixed-size output may legitimately lose its init-weight term like width^-1/2.
        floor = -(tol_vanish + (READOUT_DECAY if fixed else 0.0))
        if u > tol_grow:
            failing.append((u - tol_grow, (m, t, UPD, u)))
        elif u < floor:
            failing.append((floor - u, (m, t, UPD, u)))
    return acts, upds


def _seed_mean(values: Sequence[float]) -> float:
    """Mean over seeds of one statistic; seeds where it was not measured (NaN: an empty output, or
    routed rows unlike step 0's) are left out, and it is NaN only where no seed measured it. An
    ``inf`` (a blow-up) stays ``inf``."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def _slope(x: np.ndarray, values: Sequence[float]) -> float:
    """Least-squares slope of log2(values) on x. NaN if every value is 0 (nothing to measure,
    e.g. a zero-initialised readout at init or a module that never changes) or some value is NaN
    (not measured there); +inf if any value is infinite (training diverged at some width, which
    must fail)."""
    v = np.asarray(values, dtype=float)
    if np.any(np.isinf(v)):
        return math.inf
    if np.any(np.isnan(v)):  # not measured at some width (see ``_seed_mean``): nothing to fit
        return math.nan
    if np.all(v == 0.0):
        return math.nan
    # A 0 at some widths only: floor it so the slope is huge rather than undefined.
    y = np.log2(np.maximum(v, np.finfo(float).tiny))
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def _sizes(records: list[dict[str, Any]], modules: list[str]) -> tuple[list[str], set[str]]:
    """``(fixed, unaligned)``. Fixed-size outputs (readout logits, the model output) have the same
    size at every width. Unaligned ones are routed, changing size with the seed or step at one width
    (an MoE expert gets whichever tokens the router sends it: its rows at step t are not step 0's
    rows, so |h_t - h_0| would compare different tokens; its update is not judged, its activation
    is), or idle (empty everywhere: an expert no token reaches). Their statistics may be missing (an
    expert with no token at some step); any other module's missing statistic fails (an output that
    is empty at some widths only is not a width-stable coordinate)."""
    sizes: dict[str, set[int]] = {}
    per_width: dict[tuple[str, float], set[int]] = {}
    for r in records:
        sizes.setdefault(r["module"], set()).add(r["numel"])
        per_width.setdefault((r["module"], r["width"]), set()).add(r["numel"])
    unaligned = {m for (m, _), n in per_width.items() if len(n) > 1} | {m for m, n in sizes.items() if n == {0}}
    return [m for m in modules if len(sizes[m]) == 1 and sizes[m] != {0}], unaligned
