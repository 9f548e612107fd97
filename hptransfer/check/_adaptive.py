"""The adaptive sweep: the check's verdict from a third to a half of the grid's training steps.

The full grid trains every (width, seed, value) point, most of them far from the optimum, where
they only show that the loss is high. The adaptive sweep trains, per (parametrization, width),
only the points the analysis reads, in rounds on the same grid (so its runs are grid points,
stored in the same studies, and a later full-grid check reuses them):

0. **survey** the first (smallest, cheapest) width every two octaves over the whole grid, plus
   its top edge (unless within an octave of the last survey point) and the given start (e.g. the
   tuned LR): LR landscapes can have two valleys (measured on the GPT
   char-LM: two minima two octaves apart at width 32), and a bracket from one start point would
   settle in whichever it meets first;
1. **bracket**: the first width on the octave lattice (every ``stride``-th grid point,
   ``stride = per_octave``), from the best survey point; later widths one grid step at a time from
   the previous width's optimum (μP keeps it close, and SP's drift is walked step by step). Walk
   towards lower loss until the best point has both neighbours at that stride (or the grid edge,
   which the verdict then reports as "grid too narrow" as the full grid would);
2. **refine**: run the points the bootstrap reads -- for every draw of the seeds with replacement
   (the bootstrap's replicates of this width), the argmin of its seed-mean curve and both
   neighbours (:func:`replicate_window`), repeated until every draw's argmin is bracketed. (A
   fixed window of two steps either side of the best point, the first version, ran 5 points per
   width even where the seeds agree on the argmin);
3. **anchor**: at every width, the two grid points around the smallest width's optimum, which
   wider-is-better and the regret interpolate at.

Every point is run at every seed (the optimum is a seed-mean statistic). Missing points are NaN
for the analysis, which only reads the neighbourhoods above.

**Early stopping** (``margins``, :mod:`._prune`): a point outside the refinement window around the
current best (survey and bracketing points, never an anchor) may be stopped at 25/50/75% of its
steps when its training loss is above ``(1 + margin) x`` the best finished run's at that width and
seed (one margin per checkpoint). A stopped point counts as worse than the best for bracketing, is
NaN (at every seed) for the analysis, and is run again to the end if the best moves so that it
falls inside the window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from ..studies import create_study, recover_stale
from ._objective import SweepObjective
from ._optimum import mean_curve, vertex
from ._prune import DEFAULT_MARGINS
from ._sweep import Runner, SweepData, SweepPlan, collect, merge, split, study_name

__all__ = ["run_adaptive", "next_points", "prunable"]


def next_points(curve: np.ndarray, *, start: int, stride: int, refine: int, anchors: Sequence[int] = (),
                survey: bool = False, pruned: np.ndarray | None = None,
                window: Sequence[int] | None = None) -> list[int]:
    """Grid indices to run next for one width, given the seed-mean ``curve`` so far (NaN: not run,
    inf: diverged). An empty list means the width is done. ``survey``: the first round covers the
    whole grid every two octaves (plus ``start``), so that a second valley is not missed.
    ``pruned``: points whose runs were stopped early; they count as worse than the best while
    bracketing, and are run again (to the end) if they fall in the refinement window or on an anchor.
    ``window``: the refinement points (:func:`replicate_window`); default ``refine`` steps either side
    of the best point."""
    n = len(curve)
    stopped = np.zeros(n, dtype=bool) if pruned is None else np.asarray(pruned, dtype=bool)
    curve = np.where(stopped, math.inf, curve)
    done = ~np.isnan(curve)

    def todo(idx: Sequence[int], redo: bool = False) -> list[int]:
        return sorted({i for i in idx if 0 <= i < n and (not done[i] or (redo and stopped[i]))})

    if not done.any():
        if survey:
            lattice = list(range(0, n, 2 * stride))
            top = [n - 1] if n - 1 - lattice[-1] > stride else []  # the top edge, unless within an octave
            return todo([*lattice, *top, start])
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
    near = range(best - refine, best + refine + 1) if window is None else window
    return todo([*near, *anchors], redo=True)


def replicate_window(losses: np.ndarray) -> list[int]:
    """The grid points the bootstrap reads on one width's ``losses[g, s]`` so far: for every draw of
    the seeds with replacement, the argmin of its seed-mean curve and both neighbours (the vertex's
    three points). Once all of them are run, every replicate's argmin is bracketed."""
    n_s = losses.shape[1]
    draws = list(itertools.combinations_with_replacement(range(n_s), n_s)) if n_s <= 5 else \
        [(s,) for s in range(n_s)] + [tuple(range(n_s))]
    out: set[int] = set()
    for pick in draws:
        c = mean_curve(losses[:, list(pick)])
        finite = np.where(np.isfinite(c), c, np.inf)
        if np.isfinite(finite).any():
            i = int(np.argmin(finite))
            out.update((i - 1, i, i + 1))
    return sorted(out)


def prunable(idx: Sequence[int], curve: np.ndarray, *, refine: int, anchors: Sequence[int] = ()) -> list[bool]:
    """Which of the points ``idx`` may be stopped early: those outside the refinement window around the
    current best point (every point, while none has finished) and not on an anchor, i.e. points the
    analysis does not read unless the best moves (and then a stopped one is run again)."""
    finite = np.where(np.isfinite(curve), curve, np.inf)
    if not np.isfinite(finite).any():
        return [i not in anchors for i in idx]
    best = int(np.argmin(finite))
    return [abs(i - best) > refine and i not in anchors for i in idx]


def _anchors(x: np.ndarray, opt: float) -> list[int]:
    """The grid indices on both sides of ``opt`` (log2), for interpolation."""
    if not math.isfinite(opt):
        return []
    j = int(np.searchsorted(x, opt))
    return [j - 1, j] if 0 < j < len(x) and x[j] != opt else [min(j, len(x) - 1)]


def _enqueue(study: optuna.Study, sub: SweepPlan, points: list[tuple[int, float, bool]]) -> int:
    """Queue the (seed, value, prunable) points of a one-width plan that no trial holds yet (a stopped
    one is queued again); returns how many trials are waiting."""
    (par,), (width,) = sub.parametrizations, sub.widths
    held = [t.params for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING,
                                                                        TrialState.COMPLETE))]
    for seed, value, may_stop in points:
        params = {"parametrization": par, "width": width, "seed": seed, sub.hp: value}
        if not any(h.get("seed") == seed and h.get(sub.hp) is not None
                   and math.isclose(float(h[sub.hp]), value, rel_tol=1e-9) for h in held):
            study.enqueue_trial(params, user_attrs={"prunable": bool(may_stop)})
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def run_adaptive(
    runner: Runner,
    plans: Sequence[SweepPlan],
    *,
    url: str,
    prefix: str = "hptransfer",
    start: float | None = None,
    refine: int = 2,
    margins: Sequence[float] | None = DEFAULT_MARGINS,
    progress: Callable[[str], None] | None = None,
) -> list[SweepData]:
    """Run (or resume) every plan adaptively; one :class:`SweepData` per plan, shaped as the grid's.

    Args:
        runner, plans, url, prefix, progress: as for :func:`hptransfer.check._sweep.run_sweep`;
            ``url`` may be ``"inmemory"`` (in-process, not persisted).
        start: where the first width starts (an HP value; default the grid's middle), e.g. the
            recipe's tuned LR.
        refine: grid steps on each side of the best point where no run is stopped early (default 2).
        margins: stop a run outside the refinement window once its training loss at checkpoint ``k``
            is above ``(1 + margins[k]) x`` the best run's at that width and seed (:mod:`._prune`);
            None: never.
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
                rounds = _Rounds(runner, sub, name, url, per_octave, refine, margins, say)
                data = rounds.run(first, anchors, survey=not anchors)
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


class _Rounds:
    """Rounds of :func:`next_points` on one (parametrization, width) study until nothing is left to run."""

    def __init__(self, runner: Runner, sub: SweepPlan, name: str, url: str, stride: int, refine: int,
                 margins: Sequence[float] | None, say: Callable[[str], None]):
        self.runner, self.sub, self.name, self.stride, self.refine, self.say = runner, sub, name, stride, refine, say
        if url == "inmemory":
            self.study = optuna.create_study(study_name=name, storage=optuna.storages.InMemoryStorage(),
                                             direction="minimize")
        else:
            self.study = create_study(url, name, attrs={"kind": "check", "hp": sub.hp,
                                                        "fingerprint": runner.fingerprint()})
            recover_stale(self.study)
        self.study.sampler = optuna.samplers.RandomSampler(seed=0)  # enqueued trials fix every parameter
        self.objective = SweepObjective(runner, sub, None, margins)

    def _state(self) -> tuple[SweepData, np.ndarray, np.ndarray]:
        """The data so far with stopped points masked out (NaN at every seed: a point where one seed
        was stopped is known to be far from the valley), the seed-mean curve and the stopped mask."""
        (par,) = self.sub.parametrizations
        data = collect(self.study, self.sub, self.name)
        stopped = data.pruned[par][0].any(axis=-1)
        data.losses[par][0][stopped] = np.nan
        return data, mean_curve(data.losses[par][0]), stopped

    def run(self, start: int, anchors: list[int], survey: bool = False) -> SweepData:
        """Run rounds from grid index ``start``; the width's data once nothing is left to run."""
        sub, last = self.sub, None
        (par,) = sub.parametrizations
        while True:
            data, curve, stopped = self._state()
            # The first width brackets an octave at a time (after its survey: robust to a second
            # valley); later widths start at the previous optimum and bracket one grid step at a time.
            idx = next_points(curve, start=start, stride=self.stride if survey else 1, refine=self.refine,
                              anchors=anchors, survey=survey, pruned=stopped,
                              window=replicate_window(data.losses[par][0]))
            if not idx or idx == last:  # done, or the same points again (their runs raised): report them missing
                return data
            last = idx
            may_stop = prunable(idx, curve, refine=self.refine, anchors=anchors)
            self.say(f"  {par} width {sub.widths[0]}: running {sub.hp} = "
                     + ", ".join(f"{sub.values[i]:.3g}" for i in idx) + f" x {len(sub.seeds)} seed(s)")
            # Points nearest the best (or the start) first, so that farther ones meet a good reference curve.
            finite = np.where(np.isfinite(curve), curve, np.inf)
            near = int(np.argmin(finite)) if np.isfinite(finite).any() else start
            order = sorted(zip(idx, may_stop), key=lambda p: (p[1], abs(p[0] - near), p[0]))
            waiting = _enqueue(self.study, sub, [(s, sub.values[i], m) for i, m in order for s in sub.seeds])
            if waiting:
                self.study.optimize(self.objective, n_trials=waiting, gc_after_trial=False)
