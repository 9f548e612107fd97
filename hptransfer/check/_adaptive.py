"""The adaptive sweep: the check's verdict from about a third of the grid's training runs.

The full grid trains every (width, seed, value) point, most of them far from the optimum, where
they only show that the loss is high. The adaptive sweep trains, per (parametrization, width),
only the points the analysis reads, in rounds on the same grid (so its runs are grid points,
stored in the same studies, and a later full-grid check reuses them):

0. **survey** the first (smallest, cheapest) width every two octaves over the whole grid, plus
   the given start (e.g. the tuned LR): LR landscapes can have two valleys (measured on the GPT
   char-LM: two minima two octaves apart at width 32), and a bracket from one start point would
   settle in whichever it meets first;
1. **bracket** on the octave lattice (every ``stride``-th grid point, ``stride = per_octave``):
   start at the best point so far (later widths: the previous width's optimum, and its octave
   neighbours), and walk an octave at a time towards lower loss until the best point has both
   octave neighbours (or the grid edge, which the verdict then reports as "grid too narrow" as
   the full grid would);
2. **refine** around the best point: every grid point within ``refine`` steps of it, so that
   the parabola vertex and its seed-bootstrap replicates (whose argmin may move a step) have
   their neighbours;
3. **anchor**: at every width, the two grid points around the smallest width's optimum, which
   wider-is-better and the regret interpolate at.

Every point is run at every seed (the optimum is a seed-mean statistic). Missing points are NaN
for the analysis, which only reads the neighbourhoods above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ..studies import create_study, load_study, recover_stale
from ._objective import SweepObjective
from ._optimum import mean_curve, vertex
from ._sweep import Runner, SweepData, SweepPlan, collect, merge, split, study_name

__all__ = ["run_adaptive", "next_points"]


def next_points(curve: np.ndarray, *, start: int, stride: int, refine: int, anchors: Sequence[int] = (),
                survey: bool = False) -> list[int]:
    """Grid indices to run next for one width, given the seed-mean ``curve`` so far (NaN: not run,
    inf: diverged). An empty list means the width is done. ``survey``: the first round covers the
    whole grid every two octaves (plus ``start``), so that a second valley is not missed."""
    n = len(curve)
    done = ~np.isnan(curve)

    def todo(idx: Sequence[int]) -> list[int]:
        return sorted({i for i in idx if 0 <= i < n and not done[i]})

    if not done.any():
        if survey:
            return todo([*range(0, n, 2 * stride), n - 1, start])
        return todo([start - stride, start, start + stride]) or [min(max(start, 0), n - 1)]
    finite = np.where(np.isfinite(curve), curve, np.inf)
    if not np.isfinite(finite).any():
        # Everything run so far diverged: look an octave below the lowest point run.
        low = int(np.flatnonzero(done)[0])
        return todo([low - stride])
    best = int(np.argmin(finite))
    bracket = todo([best - stride, best + stride])
    if bracket:
        return bracket
    return todo([*range(best - refine, best + refine + 1), *anchors])


def _anchors(x: np.ndarray, opt: float) -> list[int]:
    """The grid indices on both sides of ``opt`` (log2), for interpolation."""
    if not math.isfinite(opt):
        return []
    j = int(np.searchsorted(x, opt))
    return [j - 1, j] if 0 < j < len(x) and x[j] != opt else [min(j, len(x) - 1)]


def _drain(url: str, name: str, runner: Runner, sub: SweepPlan, points: list[tuple[int, float]],
           on_done: Callable[[dict[str, Any]], None] | None) -> None:
    """Run the given (seed, value) points of a one-width plan as enqueued trials of its study."""
    study = load_study(url, name, sampler=optuna.samplers.RandomSampler(seed=0))
    (par,), (width,) = sub.parametrizations, sub.widths
    for seed, value in points:
        study.enqueue_trial({"parametrization": par, "width": width, "seed": seed, sub.hp: value},
                            skip_if_exists=True)
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    if waiting:
        study.optimize(SweepObjective(runner, sub, on_done), n_trials=waiting, gc_after_trial=False)


def run_adaptive(
    runner: Runner,
    plans: Sequence[SweepPlan],
    *,
    url: str,
    prefix: str = "hptransfer",
    start: float | None = None,
    refine: int = 2,
    progress: Callable[[str], None] | None = None,
) -> list[SweepData]:
    """Run (or resume) every plan adaptively; one :class:`SweepData` per plan, shaped as the grid's.

    Args:
        runner, plans, url, prefix, progress: as for :func:`hptransfer.check._sweep.run_sweep`;
            ``url`` may be ``"inmemory"`` (in-process, not persisted).
        start: where the first width starts (an HP value; default the grid's middle), e.g. the
            recipe's tuned LR.
        refine: grid steps on each side of the best point that are run (default 2: the vertex
            and its bootstrap replicates keep their neighbours).
    """
    say = progress or (lambda _msg: None)
    fingerprint = runner.fingerprint()
    out = []
    for plan in plans:
        x = np.log2(np.asarray(plan.values))
        per_octave = max(1, round(1.0 / float(np.median(np.diff(x))))) if len(x) > 1 else 1
        parts: dict[tuple[str, int], SweepData] = {}
        for par in plan.parametrizations:
            first = int(np.argmin(np.abs(x - math.log2(start)))) if start else len(x) // 2
            anchors: list[int] = []
            for sub in (s for s in split(plan) if s.parametrizations == (par,)):
                name = study_name(prefix, sub, fingerprint)
                data = _one_width(runner, sub, name, url, first, per_octave, refine, anchors, say,
                                  survey=not anchors)
                curve = mean_curve(data.losses[par][0])
                finite = np.where(np.isfinite(curve), curve, np.inf)
                if np.isfinite(finite).any():
                    first = int(np.argmin(finite))  # the next width starts where this one ended
                    if not anchors:
                        anchors = _anchors(x, vertex(x, curve)[0])
                parts[(par, sub.widths[0])] = data
        merged = merge(plan, [parts[(p, w)] for p in plan.parametrizations for w in plan.widths])
        merged.sparse = True
        out.append(merged)
    return out


def _one_width(runner: Runner, sub: SweepPlan, name: str, url: str, start: int, stride: int, refine: int,
               anchors: list[int], say: Callable[[str], None], survey: bool = False) -> SweepData:
    """Rounds of :func:`next_points` on one (parametrization, width) until nothing is left to run."""
    storage = optuna.storages.InMemoryStorage() if url == "inmemory" else url
    if url == "inmemory":
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    else:
        study = create_study(url, name, attrs={"kind": "check", "hp": sub.hp, "fingerprint": runner.fingerprint()})
        recover_stale(study)
    (par,) = sub.parametrizations
    last: list[int] = []
    while True:
        data = collect(study, sub, name)
        idx = next_points(mean_curve(data.losses[par][0]), start=start, stride=stride, refine=refine,
                          anchors=anchors, survey=survey)
        if not idx or idx == last:  # done, or the same points again (their runs raised): report them missing
            return data
        last = idx
        say(f"  {par} width {sub.widths[0]}: running {sub.hp} = "
            + ", ".join(f"{sub.values[i]:.3g}" for i in idx) + f" x {len(sub.seeds)} seed(s)")
        points = [(s, sub.values[i]) for i in idx for s in sub.seeds]
        if url == "inmemory":
            for seed, value in points:
                study.enqueue_trial({"parametrization": par, "width": sub.widths[0], "seed": seed, sub.hp: value})
            study.sampler = optuna.samplers.RandomSampler(seed=0)
            study.optimize(SweepObjective(runner, sub, None), n_trials=len(points), gc_after_trial=False)
        else:
            _drain(url, name, runner, sub, points, None)
