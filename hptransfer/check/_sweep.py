"""The verification sweep: Optuna grid studies on the tuner's storage, one per (parametrization, width).

Each swept hyperparameter is a grid over ``parametrization x width x seed x value`` (the other
HPs stay at their fixed values: a one-at-a-time slice, as in the TP5 figures), run as one
Optuna grid study per (parametrization, width) -- ``GridSampler`` compares every finished
trial's search space on every new trial, so one study of N trials costs O(N^2) (measured: 15 s
of sampler time for 272 trials; per-width studies of ~40 trials make it negligible).

Running grid studies on the same storage as ``tune`` (journal file by default, PostgreSQL for
several machines) gives, for free:

* **resume** -- a rerun loads the study and runs only grid points not finished yet; trials
  left RUNNING by a killed worker are failed and re-queued (``_storage.recover_stale``);
* **parallel workers** -- spawned processes (one torch thread each) share the study; the
  sampler hands each a different unvisited point;
* **inspection** -- ``optuna-dashboard`` opens the same file.

A diverged run (the training loop's guard stops it early) is recorded with user attribute
``diverged=True``, constraint ``diverged=1`` and the finite penalty of the runner as its
value (shared/OPTUNA.md: NaN would mark it FAIL); the analysis counts it as diverged.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.trial import TrialState

from ..errors import CheckError, WorkerError
from ..studies import load_study
from ..studies._storage import create_study, recover_stale, reopen_study, storage_guard
from ..studies._workers import interrupted_note, raise_if_storage_lost, raise_reported, start_workers, stop_workers
from ._objective import SweepObjective

__all__ = ["Runner", "SweepPlan", "SweepData", "run_sweep", "run_subplans", "split", "merge", "study_name",
           "collect", "planned_params"]


class Runner(Protocol):
    """One training run of the sweep. Must be picklable when ``workers > 1``.

    Called as ``runner(parametrization, width, seed, hps)`` with the full HP values; returns
    an object with ``val_loss`` (nats, ``inf`` if diverged), ``diverged``, ``seconds`` and
    optionally ``reason``, ``steps`` and ``losses`` (per-step training loss) -- a
    :class:`hptransfer.training.TrainResult` fits. A runner that takes a ``report`` keyword (called
    ``report(step, loss)`` every step, may raise ``optuna.TrialPruned``) can be stopped early by the
    adaptive check; ``steps`` (its run length) places the checkpoints. ``penalty`` is the
    finite value reported to Optuna for a diverged run (the untrained loss);
    ``fingerprint()`` identifies everything that changes the outcome (model, task, steps...),
    so that changed settings start a new study instead of mixing results.
    """

    @property
    def penalty(self) -> float: ...

    def __call__(self, parametrization: str, width: int, seed: int, hps: dict[str, float],
                 report: Any = None) -> Any: ...

    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class SweepPlan:
    """The grid for one swept HP.

    Attributes:
        hp: the swept HP name (``lr``, ``init_std``, ``output_mult``, ``attn_mult``).
        values: ascending grid values of ``hp`` (positive; analysed in log2).
        widths: ascending widths (>= 3 for a verdict).
        seeds: training seeds (>= 2 for an interval).
        parametrizations: parametrization names, e.g. ``("sp", "mup")``.
        fixed: values of the other HPs during this sweep.
    """

    hp: str
    values: tuple[float, ...]
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    parametrizations: tuple[str, ...]
    fixed: dict[str, float] = field(default_factory=dict, hash=False)

    @property
    def n_runs(self) -> int:
        return len(self.values) * len(self.widths) * len(self.seeds) * len(self.parametrizations)

    def space(self) -> dict[str, list[Any]]:
        """The ``GridSampler`` search space."""
        return {"parametrization": list(self.parametrizations), "width": list(self.widths),
                "seed": list(self.seeds), self.hp: list(self.values)}


@dataclass
class SweepData:
    """Finished runs of one plan, by parametrization.

    ``losses[p]`` has shape ``(n_widths, n_values, n_seeds)``: final validation loss in nats,
    ``inf`` for a diverged run, ``nan`` for a missing one. ``seconds`` is the summed training
    time, ``failed`` counts runs that raised (not diverged: broken), ``study`` the study name.
    """

    plan: SweepPlan
    losses: dict[str, np.ndarray]
    seconds: float
    failed: int
    study: str
    reasons: list[str] = field(default_factory=list)
    #: True for an adaptive sweep: unplanned grid points are NaN by design, and only ``failed``
    #: runs count as missing.
    sparse: bool = False
    #: Training steps actually spent (finished, diverged and stopped runs), and the runs stopped early.
    steps: int = 0
    n_pruned: int = 0
    #: Runs finished (diverged ones included; a grid point run twice counts once).
    runs: int = 0
    #: ``pruned[p][w, g, s]``: that run was stopped early (known worse) and never finished.
    pruned: dict[str, np.ndarray] = field(default_factory=dict)


def study_name(prefix: str, plan: SweepPlan, fingerprint: str) -> str:
    """``{prefix}-check-{hp}-{parametrization}-w{width}-{hash}`` (single-width plans) or
    ``{prefix}-check-{hp}-{hash}``: the hash covers the grid, fixed HPs and the runner's settings."""
    key = json.dumps({"space": plan.space(), "fixed": plan.fixed, "runner": fingerprint}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    if len(plan.parametrizations) == 1 and len(plan.widths) == 1:
        return f"{prefix}-check-{plan.hp}-{plan.parametrizations[0]}-w{plan.widths[0]}-{digest}"
    return f"{prefix}-check-{plan.hp}-{digest}"


def _remaining(study: optuna.Study, plan: SweepPlan) -> int:
    """Grid points without a COMPLETE trial (a diverged run is COMPLETE with its penalty; a run
    that raised is FAIL and still to do)."""
    done = {_key(t.params, plan) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if _key(t.params, plan) is not None}
    return plan.n_runs - len(done)


def _requeue_failed(study: optuna.Study, plan: SweepPlan) -> int:
    """Re-queue grid points whose only trials FAILed (the run raised): GridSampler counts them as
    visited, so without this a rerun would never retry them. Returns how many were queued."""
    trials = study.get_trials(deepcopy=False)
    complete = {_key(t.params, plan) for t in trials if t.state == TrialState.COMPLETE}
    waiting = {_key(planned_params(t), plan) for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)}
    queued = 0
    for t in trials:
        key = _key(t.params, plan)
        if t.state == TrialState.FAIL and key is not None and key not in complete and key not in waiting:
            study.enqueue_trial(dict(t.params), user_attrs={"requeued_from": t.number})
            waiting.add(key)
            queued += 1
    return queued


def planned_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's parameters, also for a queued (WAITING) one, whose ``params`` stay empty until it runs:
    Optuna keeps them as ``fixed_params``. Reading ``params`` alone queued an interrupted point twice."""
    return trial.params or dict(trial.system_attrs.get("fixed_params") or {})


def _key(params: dict[str, Any], plan: SweepPlan) -> tuple[str, int, int, int] | None:
    """``(parametrization, width index, seed index, value index)`` of a trial, None if off-grid."""
    try:
        par, w, s, v = params["parametrization"], int(params["width"]), int(params["seed"]), float(params[plan.hp])
    except (KeyError, TypeError, ValueError):
        return None
    close = np.flatnonzero(np.isclose(plan.values, v, rtol=1e-9, atol=0.0))
    if par not in plan.parametrizations or w not in plan.widths or s not in plan.seeds or close.size == 0:
        return None
    return par, plan.widths.index(w), plan.seeds.index(s), int(close[0])


def _grid_sampler(plan: SweepPlan, worker: int) -> optuna.samplers.GridSampler:
    """A ``GridSampler`` whose grid order is the same in every worker but whose random pick
    among unvisited points differs per worker.

    The sampler's seed shuffles the grid and ``grid_id`` indexes that shuffled list, so workers
    with different seeds map one ``grid_id`` to different points (measured: 2 workers left 10 of
    144 points unrun while running others twice). Same seed, then a per-worker pick stream, so
    that workers starting together rarely pick the same point.
    """
    sampler = optuna.samplers.GridSampler(plan.space(), seed=0)
    if worker:
        # Public API: reseeds only the stream that picks among unvisited points; the grid order
        # was fixed by seed=0 in the constructor, the same in every worker.
        sampler.reseed_rng()
    return sampler


def _optimize(url: str, name: str, runner: Runner, plan: SweepPlan, worker: int,
              on_done: Callable[[dict[str, Any]], None] | None) -> None:
    sampler = _grid_sampler(plan, worker)
    study = reopen_study(url, name, sampler=sampler)  # created by run_sweep just before
    left = _remaining(study, plan)
    if left <= 0:
        return
    # n_trials bounds the loop; GridSampler stops the study itself once the grid is exhausted.
    with storage_guard(url):  # a lost database, or a journal changed under the study: one line, exit 3
        study.optimize(SweepObjective(runner, plan, on_done), n_trials=left, gc_after_trial=False)


def _worker_main(url: str, names: list[str], runner: Runner, plans: list[SweepPlan], index: int) -> None:
    """Entry point of a spawned worker: one torch thread (two processes' OpenMP threads on
    the same cores slowed training 5-10x), its own random pick of grid points."""
    import torch

    torch.set_num_threads(1)
    # A spawned process of its own (nothing to restore). Its runs report through the study; a run that
    # raises is re-raised to the parent by the worker wrapper, so Optuna's own traceback adds nothing.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # Ctrl-C or SIGTERM: the interrupted run is recorded and the worker exits 130 (studies._workers).
    for name, plan in zip(names, plans):
        _optimize(url, name, runner, plan, index, None)


def split(plan: SweepPlan) -> list[SweepPlan]:
    """One sub-plan per (parametrization, width): the unit of one grid study."""
    return [SweepPlan(plan.hp, plan.values, (w,), plan.seeds, (p,), plan.fixed)
            for p in plan.parametrizations for w in plan.widths]


def merge(plan: SweepPlan, parts: list[SweepData]) -> SweepData:
    """Reassemble the sub-plans' data into ``plan``'s arrays."""
    losses = {p: np.full((len(plan.widths), len(plan.values), len(plan.seeds)), np.nan)
              for p in plan.parametrizations}
    for d in parts:
        (p,), (w,) = d.plan.parametrizations, d.plan.widths
        losses[p][plan.widths.index(w)] = d.losses[p][0]
    pruned = {p: np.zeros(a.shape, dtype=bool) for p, a in losses.items()}
    for d in parts:
        (p,), (w,) = d.plan.parametrizations, d.plan.widths
        if p in d.pruned:
            pruned[p][plan.widths.index(w)] = d.pruned[p][0]
    names = [d.study for d in parts]
    return SweepData(plan, losses, sum(d.seconds for d in parts), sum(d.failed for d in parts),
                     names[0].rsplit("-", 1)[0] + f"-* ({len(names)} studies)" if names else "",
                     [r for d in parts for r in d.reasons][:5], steps=sum(d.steps for d in parts),
                     runs=sum(d.runs for d in parts), n_pruned=sum(d.n_pruned for d in parts), pruned=pruned)


def run_sweep(
    runner: Runner,
    plans: Sequence[SweepPlan],
    *,
    url: str,
    prefix: str = "hptransfer",
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[SweepData]:
    """Run (or resume) every plan on the storage at ``url``, one grid study per (parametrization,
    width); return one :class:`SweepData` per plan. Arguments as for :func:`run_subplans`."""
    subs = [split(p) for p in plans]
    flat = run_subplans(runner, [s for group in subs for s in group], url=url, prefix=prefix, workers=workers,
                        progress=progress)
    out, k = [], 0
    for plan, group in zip(plans, subs):
        out.append(merge(plan, flat[k:k + len(group)]))
        k += len(group)
    return out


def run_subplans(
    runner: Runner,
    plans: Sequence[SweepPlan],
    *,
    url: str,
    prefix: str = "hptransfer",
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[SweepData]:
    """Run (or resume) every plan's grid study on the storage at ``url``; return the data.

    Args:
        runner: the training run (picklable for ``workers > 1``).
        plans: one per swept HP.
        url: storage URL from :func:`hptransfer.studies.storage_url` (``journal://...``,
            ``postgresql://...``); ``"inmemory"`` runs in this process without persistence.
        prefix: study-name prefix (the recipe name).
        workers: local processes; 1 runs in this process.
        progress: called with one-line messages (study names, counts, finished runs).
    """
    names = [study_name(prefix, p, runner.fingerprint()) for p in plans]
    say = progress or (lambda _msg: None)
    if url == "inmemory":
        if workers > 1:
            raise CheckError("workers > 1 needs a persistent storage. Fix: pass storage='check.journal' "
                                  "(a journal file) or a postgresql:// URL, or use workers=1.")
        printer = _printer(say, sum(p.n_runs for p in plans))
        return [_run_inmemory(runner, plan, name, printer) for plan, name in zip(plans, names)]
    for plan, name in zip(plans, names):
        # Created once here: workers only load (creating concurrently races on a fresh RDB).
        study = create_study(url, name, attrs={"kind": "check", "hp": plan.hp, "fingerprint": runner.fingerprint()})
        stale = recover_stale(study)
        stale += [-1] * _requeue_failed(study, plan)  # counted with the interrupted ones in the message
        left = _remaining(study, plan)
        if left or stale:
            say(f"study {name}: {plan.n_runs} runs, {left} to go"
                + (f" ({len(stale)} interrupted or failed run(s) re-queued)" if stale else ""))
    if workers <= 1:
        printer = _printer(say, sum(_remaining(load_study(url, n), p) for p, n in zip(plans, names)))
        for plan, name in zip(plans, names):
            _optimize(url, name, runner, plan, 0, printer)
    else:
        _spawn(url, names, runner, list(plans), workers)
    return [collect(load_study(url, name), plan, name) for plan, name in zip(plans, names)]


def _run_inmemory(runner: Runner, plan: SweepPlan, name: str,
                  printer: Callable[[dict[str, Any]], None]) -> SweepData:
    study = optuna.create_study(study_name=name, direction="minimize", sampler=_grid_sampler(plan, 0))
    study.optimize(SweepObjective(runner, plan, printer), n_trials=plan.n_runs, gc_after_trial=False)
    return collect(study, plan, name)


def _printer(say: Callable[[str], None], total: int) -> Callable[[dict[str, Any]], None]:
    count = [0]
    start = time.perf_counter()

    def on_done(rec: dict[str, Any]) -> None:
        count[0] += 1
        loss = "diverged" if rec["diverged"] else f"{rec['val_loss']:.4f}"
        hp = rec["hp"]
        say(f"  [{count[0]}/{total}] {rec['parametrization']} width {rec['width']} seed {rec['seed']} "
            f"{hp}={rec['value']:.4g}: {loss} ({time.perf_counter() - start:.0f}s)")
    return on_done


def _spawn(url: str, names: list[str], runner: Runner, plans: list[SweepPlan], n: int) -> None:
    procs = start_workers(_worker_main, [(url, names, runner, plans, i) for i in range(n)],
                          fix="pass a model factory defined at module level (not a lambda or closure), "
                              "or use workers=1.")
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        stop_workers(procs)
        raise
    bad = [p.exitcode for p in procs if p.exitcode]
    raise_if_storage_lost(procs, url, "check worker(s)")
    raise_reported(procs, fallback=CheckError)  # the user's factory or runner raised: as in-process
    if bad:
        raise WorkerError(f"{len(bad)} check worker(s) exited with codes {bad}{interrupted_note(bad)}. Fix: rerun "
                          "the same command to continue (finished runs are kept in the study), with workers=1 to "
                          "see an error.")


def collect(study: optuna.Study, plan: SweepPlan, name: str) -> SweepData:
    """Turn a grid study's trials into loss arrays; duplicates of a grid point are averaged."""
    shape = (len(plan.widths), len(plan.values), len(plan.seeds))
    sums = {p: np.zeros(shape) for p in plan.parametrizations}
    counts = {p: np.zeros(shape) for p in plan.parametrizations}
    diverged = {p: np.zeros(shape, dtype=bool) for p in plan.parametrizations}
    seconds, steps = 0.0, 0
    failed: set[Any] = set()
    stopped: set[Any] = set()
    finished: set[Any] = set()
    reasons: list[str] = []
    for t in study.get_trials(deepcopy=False):
        key = _key(t.params, plan)
        if key is None:
            continue
        par, w, s, v = key
        steps += int(t.user_attrs.get("steps", 0))
        if t.state == TrialState.PRUNED:
            stopped.add(key)
            continue
        if t.state == TrialState.FAIL:
            failed.add(key)
            continue
        if t.state != TrialState.COMPLETE:
            continue
        finished.add(key)
        seconds += float(t.user_attrs.get("seconds", 0.0))
        if t.user_attrs.get("diverged"):
            diverged[par][w, v, s] = True
            if len(reasons) < 5:
                reasons.append(str(t.user_attrs.get("diverged_reason", "")))
        else:
            sums[par][w, v, s] += float(t.value or 0.0)
            counts[par][w, v, s] += 1
    losses = {}
    for p in plan.parametrizations:
        with np.errstate(invalid="ignore", divide="ignore"):
            arr = sums[p] / counts[p]
        arr[diverged[p]] = math.inf
        losses[p] = arr
    # A FAIL is only "failed" while no other trial covered that grid point (an adaptive sweep
    # leaves other points NaN on purpose, so count the failed points themselves).
    still = sum(1 for par, w, s, v in failed if math.isnan(losses[par][w, v, s]))
    pruned = {p: np.zeros(shape, dtype=bool) for p in plan.parametrizations}
    for par, w, s, v in stopped:  # a point rerun to completion later is not "stopped"
        pruned[par][w, v, s] = bool(np.isnan(losses[par][w, v, s]))
    return SweepData(plan, losses, seconds, still, name, reasons, steps=steps, runs=len(finished),
                     n_pruned=sum(int(m.sum()) for m in pruned.values()), pruned=pruned)
