"""The transfer check's engine: do the optimal hyperparameters stay put as the model gets wider?

:func:`check_grid` (run by :func:`hptransfer.check.check_recipe`, the one implementation behind both
doors, and by the drift fit) sweeps each HP over a log grid at three or more widths and two or more
seeds (an Optuna grid study on the tuner's storage, so it resumes and runs in parallel),
estimates the optimum at every width with a bootstrap interval (``_optimum``), and turns the
TP5 figure into numbers and a verdict:

* **drift** -- slope of the optimum against log2(width), octaves per width doubling;
* **shift** -- optimum at the largest width minus at the smallest (octaves);
* **regret** -- loss at the largest width with the smallest width's optimum, minus the best
  loss at the largest width (nats, and relative to that best loss);
* **wider is better** -- at the smallest width's optimum, loss must not rise with width.

A check *passes* when no optimum sits on the grid edge ("grid too narrow" otherwise, with
the range to try next), every grid point ran, and drift, regret and wider-is-better are
within :class:`Tolerances`. The defaults are justified in ``docs/verification.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

from .._io import redact_url
from ..errors import CheckError
from ..recipe import SWEEPABLE
from ..recipe._sections import EXPECTATIONS, Expectation
from ..recipe._stages import PRUNE_MARGINS
from ..studies._logging import optuna_verbosity
from . import _optimum
from ._adaptive import Walk, run_adaptive
from ._report import Tolerances, TransferReport
from ._sweep import Runner, SweepPlan, run_sweep
from ._verdict import judge_sweep

__all__ = ["check_grid", "Strategy", "extended", "resolve_workers"]

#: How the check spends runs: ``grid`` trains every grid point; ``adaptive`` brackets the optimum
#: per width and runs only the points the analysis reads (0.27-0.43 of the steps; ``_adaptive``).
Strategy = Literal["grid", "adaptive"]

def check_grid(
    runner: Runner,
    *,
    widths: Sequence[int],
    grid: Mapping[str, Sequence[float]],
    seeds: Sequence[int] = (0, 1),
    parametrizations: Sequence[str] = ("mup",),
    fixed: Mapping[str, float] | None = None,
    tolerances: Tolerances | None = None,
    expect: Mapping[str, str] | None = None,
    storage: str | None = None,
    study_prefix: str = "hptransfer",
    workers: int | str = "auto",
    n_boot: int = _optimum.DEFAULT_N_BOOT,
    progress: Callable[[str], None] | None = None,
    config: dict[str, Any] | None = None,
    strategy: Strategy = "grid",
    start: float | None = None,
    prune_margins: Sequence[float] | None = PRUNE_MARGINS,
    walk: Walk | None = None,
    extend: int = 0,
) -> TransferReport:
    """Sweep ``grid`` at ``widths`` x ``seeds`` x ``parametrizations`` with ``runner`` (a recipe's
    :class:`~hptransfer.check._runner.RecipeRunner`) and judge each optimum's drift. Arguments as for
    :func:`hptransfer.check_transfer`; ``walk`` sets how the adaptive strategy explores (:class:`Walk`);
    ``start`` is where the adaptive strategy's first width starts (an HP value, e.g. the tuned LR);
    ``extend``: grid points the adaptive strategy may add beyond each end of every grid, at the end's
    spacing, when a width's optimum walks out of it (``check.extend``; the grid strategy ignores it)."""
    plans = _plans(widths, grid, seeds, parametrizations, fixed)
    grid_runs = int(sum(p.n_runs for p in plans))
    if strategy == "adaptive" and extend > 0:
        plans = _plans(widths, {hp: extended(v, extend) for hp, v in grid.items()}, seeds, parametrizations, fixed)
        walk = dataclasses.replace(walk or Walk(), margin=extend)
    expect_map = _expectations(expect, parametrizations)
    tol = tolerances or Tolerances()
    t0 = time.perf_counter()
    if storage is None or storage == "inmemory":
        url = "inmemory"
    else:
        from ..studies import storage_url

        url = storage_url(storage, ".")
    with optuna_verbosity(logging.WARNING):  # one INFO line per trial would drown the report
        data = (run_adaptive(runner, plans, url=url, prefix=study_prefix, start=start, margins=prune_margins,
                             progress=progress, walk=walk)
                if strategy == "adaptive" else
                run_sweep(runner, plans, url=url, prefix=study_prefix, workers=resolve_workers(workers, url),
                          progress=progress))
    results = [judge_sweep(d, p, tol, expect=expect_map[p], n_boot=n_boot)
               for d in data for p in d.plan.parametrizations]
    cfg = {"widths": list(plans[0].widths), "seeds": list(plans[0].seeds), "parametrizations": list(parametrizations),
           "grid": {p.hp: list(p.values) for p in plans}, "fixed": dict(fixed or {}), "storage": redact_url(url),
           "train_seconds": round(sum(d.seconds for d in data), 1), "strategy": strategy,
           "runs_trained": int(sum(d.runs for d in data)), "grid_runs": grid_runs,
           "extend": extend if strategy == "adaptive" else 0,
           "workers": 1 if strategy == "adaptive" else resolve_workers(workers, url),
           "steps_trained": int(sum(d.steps for d in data)), "runs_pruned": int(sum(d.n_pruned for d in data)),
           **(config or {})}
    return TransferReport(results, tol, cfg, time.perf_counter() - t0, [d.study for d in data])



def extended(values: Sequence[float], n: int) -> list[float]:
    """``values`` (ascending, positive) with ``n`` more points beyond each end, log-spaced as the two
    values at that end."""
    v = [float(x) for x in values]
    lo, hi = v[1] / v[0], v[-1] / v[-2]
    return [v[0] / lo ** k for k in range(n, 0, -1)] + v + [v[-1] * hi ** k for k in range(1, n + 1)]


def resolve_workers(workers: int | str, url: str) -> int:
    """Worker processes for ``workers``: an int >= 1 as given; ``"auto"`` one per CPU core
    (``os.cpu_count()``), or 1 for in-memory storage (workers share a persistent one)."""
    if workers == "auto":
        return 1 if url == "inmemory" else max(1, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CheckError(f"workers={workers!r} must be an integer >= 1 or 'auto'. Fix: e.g. workers=1.")
    return workers


def _plans(widths: Sequence[int], grid: Mapping[str, Sequence[float]], seeds: Sequence[int],
           parametrizations: Sequence[str], fixed: Mapping[str, float] | None) -> list[SweepPlan]:
    ws = tuple(sorted({int(w) for w in widths}))
    if len(ws) < 3 or min(ws) < 1:
        raise CheckError(f"widths={list(widths)} must hold at least 3 distinct positive widths (a slope from two "
                         "points has no uncertainty). Fix: e.g. widths=[64, 128, 256, 512].")
    ss = tuple(dict.fromkeys(int(s) for s in seeds))
    if len(ss) < 2:
        raise CheckError(f"seeds={list(seeds)} must hold at least 2 distinct seeds (the interval comes from "
                         "resampling seeds). Fix: seeds=[0, 1, 2].")
    if "lr" not in grid:
        raise CheckError(f"grid has {sorted(grid)} but the learning rate is required. Fix: add "
                         "grid={'lr': [...]} (e.g. half-octave steps 2**-14 .. 2**-6).")
    ps = tuple(dict.fromkeys(str(p) for p in parametrizations))
    if not ps:
        raise CheckError("parametrizations is empty. Fix: parametrizations=['mup'] or ['sp', 'mup'].")
    fixed_d = {k: float(v) for k, v in (fixed or {}).items()}
    plans = []
    for hp, values in grid.items():
        if hp not in SWEEPABLE:
            raise CheckError(f"grid HP {hp!r} cannot be swept by the check. Fix: use one of {', '.join(SWEEPABLE)}.")
        vals = tuple(float(v) for v in values)
        if len(vals) < 3 or any(not (v > 0 and math.isfinite(v)) for v in vals):
            raise CheckError(f"grid.{hp} needs at least 3 positive finite values, got {list(values)}. Fix: e.g. "
                             f"2 ** np.arange(-14, -5, 0.5).")
        if list(vals) != sorted(set(vals)):
            raise CheckError(f"grid.{hp} must be strictly increasing without duplicates. Fix: sort it.")
        if hp != "lr" and "lr" not in fixed_d:
            raise CheckError(f"sweeping {hp!r} needs a fixed learning rate for that sweep. Fix: pass "
                             "fixed={'lr': <your tuned lr>}.")
        plans.append(SweepPlan(hp, vals, ws, ss, ps, {k: v for k, v in fixed_d.items() if k != hp}))
    return plans


def _expectations(expect: Mapping[str, str] | None, parametrizations: Sequence[str]) -> dict[str, Expectation]:
    out: dict[str, Expectation] = {str(p): "pass" for p in parametrizations}
    for p, e in (expect or {}).items():
        if p not in out:
            raise CheckError(f"expect names parametrization {p!r}, which is not checked ({', '.join(out)}). "
                             "Fix: add it to parametrizations or drop it from expect.")
        if e not in EXPECTATIONS:
            raise CheckError(f"expect[{p!r}]={e!r} is not one of {', '.join(EXPECTATIONS)}.")
        out[p] = cast(Expectation, e)
    return out
