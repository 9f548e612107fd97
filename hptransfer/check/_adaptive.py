"""The adaptive sweep: the check's verdict from a quarter to a third of the grid's training steps.

The full grid trains every (width, seed, value) point, most of them far from the optimum, where
they only show that the loss is high. The adaptive sweep trains, per (parametrization, width),
only the points the analysis reads, in rounds on the same grid (so its runs are grid points,
stored in the same studies, and a later full-grid check reuses them). At the first width it
**explores on one seed** (the lead seed, the first) and runs the other seeds only where the analysis
reads, or where they could overturn the lead seed's choice (:func:`plan_round`); later widths walk
on every seed (below):

0. **survey** (lead seed) the first (smallest, cheapest) width every two octaves over the whole
   grid, plus its top edge (unless within an octave of the last survey point) and the given start
   (e.g. the tuned LR): LR landscapes can have two valleys (measured on the GPT char-LM: two minima
   two octaves apart at width 32), and a bracket from one start point would settle in whichever it
   meets first; later widths start at the previous width's optimum and its two neighbours;
1. **walk** one grid step at a time towards lower loss until the best point has both neighbours
   (or the grid edge, which the verdict then reports as "grid too narrow" as the full grid would):
   on the lead seed at the first width, whose survey has shown every valley; on every seed at later
   widths, which have no survey (walked on one seed, the quick ResGLU benchmark under SP climbed
   into a shallower second valley at width 128 that the seed mean walked away from:
   tests/check/data). The curve walked is the seed-mean with the seeds a point lacks
   :func:`impute`-d, i.e. the lead seed's ranking until points run at every seed overrule it;
2. **complete** at every seed: the points the bootstrap reads -- for every draw of the seeds with
   replacement (the bootstrap's replicates of this width), the argmin of its seed-mean curve and
   both neighbours (:func:`replicate_window`); the bottom of every valley the lead seed saw
   (:func:`valley_bottoms`), so that which valley is deepest is decided by every seed; and every
   lead-only point some draw would make its argmin if the missing seeds favoured it as much as they
   have favoured any point at this width (:func:`contenders`). Repeated (with 1.) until nothing
   changes;
3. **anchor** (every seed): at every width, the two grid points around the smallest width's
   optimum, which wider-is-better and the regret interpolate at.

Points run at the lead seed only are NaN at every seed for the analysis (which reads whole points,
like the grid's); missing points are NaN too, and the analysis only reads the points above. The
lead seed's exploration assumes another seed's offset from the lead seed at a point it dismissed
lies within the offsets seen at that width (a seed shifts the whole curve, plus noise); a seed that
disagrees by more (a valley only it sees) can be missed, where the all-seed survey of the previous
version would have caught it.

**Early stopping** (``margins``, :mod:`._prune`): a point outside the refinement window around the
current best (survey and walking points, never an anchor) may be stopped at 25/50/75% of its
steps when its training loss is above ``(1 + margin) x`` the best finished run's at that width and
seed (one margin per checkpoint). A stopped point counts as worse than the best for bracketing, is
NaN (at every seed) for the analysis, and is run again to the end if the best moves so that it
falls inside the window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from ..studies._storage import create_study, recover_stale
from ._objective import SweepObjective
from ._optimum import mean_curve, vertex
from ._prune import DEFAULT_MARGINS
from ._sweep import Runner, SweepData, SweepPlan, _key, collect, merge, planned_params, split, study_name

__all__ = ["run_adaptive", "Walk", "next_points", "plan_round", "replicate_window", "impute", "contenders",
           "valley_bottoms", "prunable"]


@dataclass(frozen=True)
class Walk:
    """How the adaptive sweep finds each width's optimum.

    Attributes:
        survey: survey the first width over the whole grid (every two octaves) before walking, so that
            no valley is missed. Off for a sweep that starts next to a known optimum (the drift fit's,
            at the tuned LR): it walks from ``start`` at once.
        anchors: also run every width at the two grid points around the first width's optimum (read by
            the check's regret and wider-is-better; the drift fit reads neither).
        predict: where each later width starts: ``predict(done, width)``, the log2 HP predicted at
            ``width`` from ``(width, log2 optimum)`` of the widths done so far (the drift fit passes its
            fitted curve, :func:`hptransfer.targets._drift.predict`), so that an optimum that drifts is
            met where it is rather than walked to. Default: the previous width's optimum (the check,
            whose walk was measured from there).
        margin: grid points at each end that only a walk downhill reaches: the survey skips them, so
            they cost runs only when an optimum lies at or beyond the grid's inner edge (the check's
            ``check.extend``).
    """

    survey: bool = True
    anchors: bool = True
    predict: Callable[[list[tuple[float, float]], float], float] | None = None
    margin: int = 0


def next_points(curve: np.ndarray, *, start: int, stride: int, refine: int, anchors: Sequence[int] = (),
                survey: bool = False, pruned: np.ndarray | None = None,
                window: Sequence[int] | None = None, span: tuple[int, int] | None = None) -> list[int]:
    """Grid indices to run next for one width, given the seed-mean ``curve`` so far (NaN: not run,
    inf: diverged). An empty list means the width is done. ``survey``: the first round covers the
    whole grid every two octaves (plus ``start``), so that a second valley is not missed.
    ``pruned``: points whose runs were stopped early; they count as worse than the best while
    bracketing, and are run again (to the end) if they fall in the refinement window or on an anchor.
    ``window``: the refinement points (:func:`replicate_window`); default ``refine`` steps either side
    of the best point. ``span``: the (first, last) indices the survey covers (default the whole grid;
    the points outside are reached only by walking downhill to them)."""
    n = len(curve)
    stopped = np.zeros(n, dtype=bool) if pruned is None else np.asarray(pruned, dtype=bool)
    curve = np.where(stopped, math.inf, curve)
    done = ~np.isnan(curve)

    def todo(idx: Sequence[int], redo: bool = False) -> list[int]:
        return sorted({i for i in idx if 0 <= i < n and (not done[i] or (redo and stopped[i]))})

    if not done.any():
        if survey:
            lo, hi = span or (0, n - 1)
            lattice = list(range(lo, hi + 1, 2 * stride))
            top = [hi] if hi - lattice[-1] > stride else []  # the top edge, unless within an octave
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


def impute(losses: np.ndarray, *, hopeful: bool = False) -> np.ndarray:
    """``losses[g, s]`` with the missing seeds of partly run points filled in: the present seeds' mean
    plus each missing seed's offset from them on the points every seed ran (a seed's init and data
    order shift its whole curve) -- the mean offset, or with ``hopeful`` the lowest one seen (the
    most that seed has been seen to favour a point over the present seeds); no point run at every
    seed yet: no offset. A point where a present seed diverged is diverged at every seed; points no
    seed ran stay NaN."""
    losses = np.array(losses, dtype=float)
    full = np.isfinite(losses).all(axis=1)
    out = losses.copy()
    for g, row in enumerate(losses):
        have = ~np.isnan(row)
        if have.all() or not have.any():
            continue
        if np.isinf(row[have]).any():
            out[g] = math.inf
            continue
        off = losses[full][:, ~have] - losses[full][:, have].mean(axis=1, keepdims=True)
        shift = (off.min(axis=0) if hopeful else off.mean(axis=0)) if full.any() else 0.0
        out[g, ~have] = row[have].mean() + shift
    return out


def _draws(n_s: int) -> list[list[int]]:
    """The bootstrap's draws of ``n_s`` seeds with replacement (as multisets; beyond 5 seeds, each
    seed alone and all of them)."""
    picks = itertools.combinations_with_replacement(range(n_s), n_s) if n_s <= 5 else \
        [(s,) for s in range(n_s)] + [tuple(range(n_s))]
    return [list(p) for p in picks]


def _argmins(losses: np.ndarray) -> set[int]:
    """The argmin of every draw's seed-mean curve."""
    out = set()
    for pick in _draws(losses.shape[1]):
        c = mean_curve(losses[:, pick])
        finite = np.where(np.isfinite(c), c, np.inf)
        if np.isfinite(finite).any():
            out.add(int(np.argmin(finite)))
    return out


def replicate_window(losses: np.ndarray) -> list[int]:
    """The grid points the bootstrap reads on one width's ``losses[g, s]`` so far: for every draw of
    the seeds with replacement, the argmin of its seed-mean curve and both neighbours (the vertex's
    three points). Once all of them are run at every seed, every replicate's argmin is bracketed.
    Points run at some seeds only (the lead seed's exploration) take part :func:`impute`-d."""
    return sorted({j for i in _argmins(impute(losses)) for j in (i - 1, i, i + 1)})


def contenders(losses: np.ndarray) -> list[int]:
    """Points run at some seeds only (the lead seed's exploration) that some bootstrap draw would make
    its argmin if each missing seed favoured them as much as it has favoured any point over the lead
    seed at this width (:func:`impute` ``hopeful``): the lead seed alone cannot dismiss them."""
    partial = np.isnan(losses).any(axis=1) & ~np.isnan(losses).all(axis=1)
    return sorted(i for i in _argmins(impute(losses, hopeful=True)) if partial[i])


def valley_bottoms(curve: np.ndarray) -> list[int]:
    """The run points of ``curve`` (NaN: not run) below the nearest run point on each side (or at the
    grid's edge): the bottom of every valley seen so far."""
    run = np.flatnonzero(~np.isnan(curve))
    vals = np.where(np.isfinite(curve[run]), curve[run], np.inf)
    return [int(run[k]) for k in range(len(run)) if np.isfinite(vals[k])
            and (k == 0 or vals[k] < vals[k - 1]) and (k == len(run) - 1 or vals[k] < vals[k + 1])]


def plan_round(losses: np.ndarray, *, start: int, stride: int, refine: int, anchors: Sequence[int] = (),
               survey: bool = False, pruned: np.ndarray | None = None,
               span: tuple[int, int] | None = None) -> tuple[list[int], bool]:
    """``(grid indices, lead seed only)`` to run next on one width's ``losses[g, s]`` (NaN: not run);
    no indices: the width is done. **Explore**: the survey (every ``2 stride`` grid steps) or the first
    bracket (``stride`` either side of ``start``), then one grid step at a time downhill until the best
    point has both neighbours. A ``survey`` width explores on the lead seed (``losses[:, 0]``) alone:
    its survey spans the grid, so every valley's bottom is seen and then run at every seed. A width
    without one explores on every seed: walked on one seed it can climb into a second, shallower
    valley the other seeds walk away from (the quick ResGLU benchmark under SP: width 128 settled
    at log2 lr -7 instead of -9.35; tests/check/data). The curve explored is the seed-mean with the seeds a point
    lacks :func:`impute`-d: the lead seed's ranking until points run at every seed overrule it.
    Then **complete** at every seed the points the analysis reads (:func:`replicate_window`, the
    ``anchors``), the bottom of every valley the exploration saw (:func:`valley_bottoms`) and the
    lead-only points another seed could make a draw's argmin (:func:`contenders`), so that which
    valley is deepest is decided by every seed, not the lead seed alone. ``pruned``: points
    stopped early (masked NaN in ``losses``), worse than the best and rerun where the analysis reads them."""
    n = losses.shape[0]
    stopped = np.zeros(n, dtype=bool) if pruned is None else np.asarray(pruned, dtype=bool)
    curve = np.where(stopped, math.inf, mean_curve(impute(losses)))
    finite = np.where(np.isfinite(curve), curve, np.inf)
    best = int(np.argmin(finite)) if np.isfinite(finite).any() else start
    first = bool(np.isnan(curve).all())
    idx = next_points(curve, start=start, stride=stride if first else 1, refine=refine, survey=survey and first,
                      pruned=stopped, window=[best - 1, best, best + 1], span=span)
    if idx:
        return idx, survey
    read = set(replicate_window(losses)) | set(anchors) | set(contenders(losses)) | set(valley_bottoms(curve))
    return sorted(g for g in read if 0 <= g < n and (np.isnan(losses[g]).any() or stopped[g])), False


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
    held = [planned_params(t) for t in study.get_trials(deepcopy=False, states=(
        TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE))]
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
    walk: Walk | None = None,
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
        walk: survey, anchors and where later widths start (:class:`Walk`; default: the check's).
    """
    walk = walk or Walk()
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
            done: list[tuple[float, float]] = []  # (width, log2 optimum) of the widths so far
            for k, sub in enumerate(s for s in split(plan) if s.parametrizations == (par,)):
                if done and walk.predict is not None:  # start where the optimum is predicted to be
                    guess = walk.predict(done, sub.widths[0])
                    first = int(np.argmin(np.abs(x - guess))) if math.isfinite(guess) else first
                name = study_name(prefix, sub, fingerprint)
                rounds = _Rounds(runner, sub, name, url, per_octave, refine, margins, say)
                data = rounds.run(first, anchors if walk.anchors else [], survey=walk.survey and k == 0,
                                  span=(walk.margin, len(x) - 1 - walk.margin) if walk.margin else None)
                curve = mean_curve(data.losses[par][0])
                finite = np.where(np.isfinite(curve), curve, np.inf)
                if np.isfinite(finite).any():
                    first = int(np.argmin(finite))  # the next width starts at least where this one ended
                    opt = vertex(x, curve)[0]
                    done.append((float(sub.widths[0]), opt))
                    if not anchors:
                        anchors = _anchors(x, opt)
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

    def _partial(self, data: SweepData) -> SweepData:
        """``data`` with the points only some seeds were asked for (the lead seed's exploration) masked
        out at every seed: the analysis reads whole points, as the grid's, never one seed's word."""
        (par,) = self.sub.parametrizations
        asked = np.zeros(data.losses[par][0].shape, dtype=bool)
        for t in self.study.get_trials(deepcopy=False):
            key = _key(t.params, self.sub)
            if key is not None:
                asked[key[3], key[2]] = True
        data.losses[par][0][asked.any(axis=1) & ~asked.all(axis=1)] = np.nan
        return data

    def run(self, start: int, anchors: list[int], survey: bool = False,
            span: tuple[int, int] | None = None) -> SweepData:
        """Run rounds from grid index ``start`` (``span``: what a survey covers); the width's data once
        nothing is left to run."""
        sub, last = self.sub, None
        (par,) = sub.parametrizations
        while True:
            data, curve, stopped = self._state()
            # The first width surveys the grid every two octaves (robust to a second valley); later
            # widths start at the previous optimum; both then walk one grid step at a time.
            idx, lead = plan_round(data.losses[par][0], start=start, stride=self.stride if survey else 1,
                                   refine=self.refine, anchors=anchors, survey=survey, pruned=stopped, span=span)
            if not idx or (idx, lead) == last:  # done, or the same points again (their runs raised)
                return self._partial(data)
            last = (idx, lead)
            seeds = sub.seeds[:1] if lead else sub.seeds
            may_stop = prunable(idx, curve, refine=self.refine, anchors=anchors)
            values = ", ".join(f"{sub.values[i]:.3g}" for i in idx)
            self.say(f"  {par} width {sub.widths[0]}: running {sub.hp} = {values} at "
                     + ("the lead seed" if lead else "every seed"))
            # Points nearest the best (or the start) first, so that farther ones meet a good reference curve.
            finite = np.where(np.isfinite(curve), curve, np.inf)
            near = int(np.argmin(finite)) if np.isfinite(finite).any() else start
            order = sorted(zip(idx, may_stop), key=lambda p: (p[1], abs(p[0] - near), p[0]))
            waiting = _enqueue(self.study, sub, [(s, sub.values[i], m) for i, m in order for s in seeds])
            if waiting:
                self.study.optimize(self.objective, n_trials=waiting, gc_after_trial=False)
