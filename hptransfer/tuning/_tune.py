"""``tune``: search a small proxy's hyperparameters with Optuna, from a recipe or from Python.

* Storage: a journal file by default (``_storage``), created once in this process before any
  worker starts; ``workers=N`` runs N local processes (spawned, one torch thread each, sampler
  seeds ``seed + i``), all writing one study with no lost trials.
* Budget and resume: the study keeps its name, so running again continues it; the recipe's
  ``trials`` is the study *total* (complete + pruned + running). Trials left RUNNING by a
  killed process, and trials failed by Ctrl-C, are failed and their parameters re-queued.
* Divergence: a diverged trial returns a finite penalty plus a violated constraint
  (``_objective``), so the sampler steers away; it is never NaN and never a crash.
* Default sampler ``gp`` (Optuna's GPSampler): best measured for 1-4 log-scale numeric HPs and
  ~100 trials (scripts/bench_samplers.py, docs/tuning.md). ``tpe`` for categorical spaces.
"""

from __future__ import annotations

import datetime
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .._version import __version__
from ..errors import StorageError, TuneError, WorkerError, warn
from ..recipe import Recipe
from ..recipe._recipe import objective_changes
from ..studies import _logging, _storage, _workers
from ..studies._progress import Progress
from ..training._build import torch_threads
from ..training._loop import AT_INIT
from ._faults import own_stale_trial, process_salt, told_too_late
from ._objective import Objective, SurplusTrial
from ._samplers import make_pruner, make_sampler
from ._settings import Settings, parse_space, settings, tune_recipe

__all__ = ["tune", "TuneResult", "make_sampler", "make_pruner", "parse_space"]

@dataclass
class TuneResult:
    """Outcome of :func:`tune`.

    ``best_values``: the HP values the best feasible trial trained with (its run spec's values: searched,
    fixed and the recipe's sections; for a ``train_fn`` that decides its own optimizer, exactly what it
    was handed); ``best_params``: the searched ones only; ``best_value``: its loss (nats); ``n_*``:
    trial counts by outcome; ``seconds``: wall time of this call; ``storage``/``study_name`` reopen it;
    ``recipe``: the recipe tuned (the Python form's too), which :func:`hptransfer.transfer` carries on.
    """

    study_name: str
    storage: str
    best_values: dict[str, Any]
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    n_complete: int
    n_pruned: int
    n_diverged: int
    n_failed: int  # trials that raised; not those cancelled before training as surplus
    seconds: float
    recipe: Recipe = field(repr=False)
    diagnostics: list[str] = field(default_factory=list)  # known breakers found before tuning (diagnostics)

    @property
    def study(self) -> optuna.Study:
        """The study, reloaded from its storage."""
        return _storage.load_study(self.storage, self.study_name)


@dataclass
class _Job:
    """Everything a worker needs (picklable for spawned processes)."""

    url: str
    study_name: str
    trials: int
    sampler: str
    pruner: str
    seed: int
    startup: int
    objective: Objective
    heartbeat: int = 0  # seconds; database storages only (_storage.open_storage)
    reconnect: int = 60  # seconds a lost database connection is retried (_reconnect)


def tune(
    recipe: Recipe | str | Path | dict | Callable[..., float],
    *,
    space: dict[str, Any] | None = None,
    width: int | Sequence[int] | None = None,
    steps: int = 0,
    batch_size: int | None = None,
    trials: int | None = None,
    seeds: Sequence[int] = (0,),
    fixed: dict[str, Any] | None = None,
    sampler: str | None = None,
    pruner: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int | None = None,
    seed: int | None = None,
    penalty: float | None = None,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> TuneResult:
    """Tune hyperparameters with Optuna and return the best values.

    Two doors to one implementation (the keyword arguments given here become the recipe's fields):
    * ``tune("recipes/mlp_quickstart.yaml", workers=2)`` -- a recipe (path, dict or :class:`Recipe`).
    * ``tune(train_fn, space={"lr": ("log_float", 1e-4, 1e-1)}, width=64, steps=200, trials=30)`` -- your
      ``train_fn(hp, *, width, seed, report) -> final loss``, standing for a recipe with it as
      ``task.train_fn`` (:func:`recipe_from_train_fn`). It is handed ``hp`` (the searched and fixed
      values, nothing else; ``spec=`` too if it takes it) and calls ``report(step, loss)`` every step.
      With ``workers > 1`` it must be a module-level function (workers are separate processes).

    Args:
        space, width, steps, batch_size, seeds: the function form's search space, proxy width(s), steps
            per run (the pruner's resource unit; 0: not known), batch size (``None``: not known; a law
            needs it) and training seeds averaged per trial (default (0,)).
        trials: total trials in the study (a rerun continues up to it). Default ``tune.trials`` (30).
        fixed: HP values every trial trains with and the result reports; a name that is also searched is
            refused (:func:`hptransfer.recipe.amend`).
        penalty: loss of a diverged trial (default: untrained).
        sampler, pruner: names (see :data:`hptransfer.recipe._sections.SAMPLERS` / ``PRUNERS``).
        storage: journal file path, ``journal:///abs/path`` or ``postgresql://...``. Default
            ``<out>/study.journal``; ``out`` defaults to ``runs/<study name>``.
        study_name: default the recipe's name; for a ``train_fn``, ``<module>.<function>``. A rerun whose
            training settings differ from the study's is refused (name a new study).
        workers, seed: local worker processes (default 1: this process); sampler seed (worker i
            uses ``seed + i``; default 0).
        overrides, quiet: ``"section.field=value"`` recipe overrides; no progress display (CI).
        threads: torch threads in this process (``None``: leave as is; workers use 1).

    Raises:
        RecipeError, StorageError: bad input, with the field and the fix.
        TuneError: nothing usable came out (every trial diverged, no finished trial).
        WorkerError: a worker process exited with an error (the study is kept).
    """
    rec = tune_recipe(recipe, space=space, width=width, steps=steps, batch_size=batch_size, seeds=seeds,
                      overrides=overrides, fixed=fixed, out=out,
                      study={"trials": trials, "sampler": sampler, "pruner": pruner, "storage": storage,
                             "workers": workers, "seed": seed, "study": study_name})
    st = settings(rec)
    t, name = rec.tune, rec.study_name
    url = _storage.storage_url(t.storage, rec.run_dir)
    if t.workers > 1 and url.startswith("sqlite"):
        raise StorageError("tune.storage: SQLite fails with several worker processes. Fix: use the default "
                           "journal file or postgresql://.")
    every = t.report_every or (max(1, rec.train.steps // 20) if rec.train.steps else 0)  # 0: steps not known
    objective = Objective(rec, penalty=penalty, report_every=every if t.pruner != "none" else 0)
    # Optuna's log level is process-wide: quiet (or no per-trial INFO lines) for this call only.
    with _logging.optuna_verbosity(logging.ERROR if quiet else logging.WARNING), _storage.storage_guard(url):
        study = _open_study(url, name, rec, make_pruner(t.pruner, _resource(objective)))
        base_seed = t.seed + 100_003 * len(study.get_trials(deepcopy=False)) + process_salt(url)
        objective.total = t.trials  # a resumed run draws new points (base_seed moves on with the trials)
        job = _Job(url, name, t.trials, t.sampler, t.pruner, base_seed, t.startup_trials, objective, t.heartbeat,
                   t.reconnect)
        start = time.perf_counter()
        with Progress(t.trials, enabled=not quiet) as progress:  # closed (line ended) even when a trial raises
            _optimize(study, job, t.workers, threads, progress)
            progress.set_done(_storage.count_trials(study, (TrialState.COMPLETE, TrialState.PRUNED)), _best(study))
        return _result(study, url, st, time.perf_counter() - start)


def _open_study(url: str, name: str, rec: Recipe, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """Create or resume the study; refuse one trained under other settings, re-queue trials of stopped workers."""
    attrs = {"recipe_hash": rec.hash, "recipe": rec.to_dict(), "hptransfer_version": __version__,
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    study = _storage.create_study(url, name, pruner=pruner, attrs=attrs, reconnect=rec.tune.reconnect)
    if study.user_attrs.get("recipe_hash") not in (None, rec.hash):
        changed = objective_changes(study.user_attrs.get("recipe") or {}, rec)
        n = len(study.get_trials(deepcopy=False))
        if changed and n:
            # Its trials were trained under other settings: their losses are not this recipe's, and
            # the best of them would be transferred as if they were.
            raise TuneError(
                f"study {name!r} in {_storage.redact_url(url)} holds {n} trial(s) of another recipe: "
                f"{'; '.join(changed[:4])}{' ...' if len(changed) > 4 else ''}. Fix: start a new study "
                "(--set tune.study=<new name>, or another --out), or restore those fields to continue it.")
        if not n:  # an empty study (stopped before its first trial) now belongs to this recipe
            for key in ("recipe_hash", "recipe"):
                study.set_user_attr(key, attrs[key])
        elif (study.user_attrs.get("recipe") or {}).get("search") != rec.to_dict()["search"]:
            warn(f"study {name!r} was created with another search space; its {n} trial(s) are kept as they are "
                  "(the sampler also learns from those outside the new ranges).")
    recovered = _storage.recover_stale(study)
    if recovered:
        warn(f"re-queued trial(s) {recovered} left unfinished by a stopped worker.")
    return study


def _optimize(study: optuna.Study, job: _Job, nworkers: int, threads: int | None, progress: Progress) -> None:
    """Run the missing trials here (one worker) or in ``nworkers`` processes; Ctrl-C keeps the study."""
    if job.trials - _storage.count_trials(study) <= 0:
        return
    try:
        if nworkers == 1:
            with torch_threads(threads):
                _run_in_process(job, progress)
        else:
            _run_workers(job, nworkers, progress)
    except KeyboardInterrupt:
        progress.close()
        _storage.recover_stale(study)
        raise


def _callbacks(job: _Job) -> list[Any]:
    return [optuna.study.MaxTrialsCallback(job.trials, states=_storage.COUNTED_STATES)]


def _run_in_process(job: _Job, progress: Progress) -> None:
    study = _storage.load_study(job.url, job.study_name, sampler=make_sampler(job.sampler, job.seed, job.startup),
                                pruner=make_pruner(job.pruner, _resource(job.objective)), heartbeat=job.heartbeat,
                                reconnect=job.reconnect)
    steps = job.objective.steps

    def on_step(trial: int, step: int, loss: float) -> None:
        progress.step(trial, step, steps, loss)

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        note = f"trial {trial.number}: {trial.state.name.lower()}"
        if trial.user_attrs.get("diverged"):
            note += " (diverged)"
        elif trial.value is not None:
            note += f" loss {trial.value:.4g}"
        progress.set_done(_storage.count_trials(study, (TrialState.COMPLETE, TrialState.PRUNED)), _best(study), note)

    job.objective.on_step = on_step
    try:
        _optimize_until_budget(study, job, [*_callbacks(job), on_trial])
    finally:
        job.objective.on_step = None


def _optimize_until_budget(study: optuna.Study, job: _Job, callbacks: list[Any]) -> None:
    """Run trials until the study holds its budget; with heartbeats, also outlive other workers' trials.

    A trial whose worker froze or died on another host still counts as RUNNING, so every worker can
    stop with the budget one short. While other trials run, this worker waits a heartbeat, fails the
    stale ones (Optuna re-queues their parameters once) and runs what that frees up.
    """
    while True:
        remaining = job.trials - _storage.count_trials(study)
        if remaining > 0:
            try:
                study.optimize(job.objective, n_trials=remaining, callbacks=callbacks, catch=(SurplusTrial,))
            except (ValueError, AssertionError) as exc:
                # Optuna's tell raises when this process's trial was failed as stale meanwhile (the process was
                # frozen or cut off past the grace): the others re-ran its parameters, so its result is dropped.
                # Only that: an error of the objective itself (a ValueError in the user's code) propagates.
                mine = own_stale_trial(study) if told_too_late(exc) else None
                if mine is None:
                    raise
                warn(f"trial {mine} finished in this worker after the other workers had failed it as stale (this "
                     "process was frozen or cut off for longer than 4 heartbeats); its parameters were queued again, "
                     "so its result is discarded and this worker goes on.", key=f"stale-own-{mine}")
                continue
        if job.heartbeat <= 0 or job.url.startswith("journal://"):
            return
        # A trial left by a worker that died before it recorded itself has no heartbeat either:
        # after a minute (or 4 heartbeats) it is stale as well (same rule as a start's recovery).
        grace = datetime.timedelta(seconds=max(60, _storage.GRACE_INTERVALS * job.heartbeat))
        if _storage.recover_stale(study, grace=grace):
            continue
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        time.sleep(job.heartbeat)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def _resource(objective: Objective) -> int:
    """The pruner's resource axis: steps of all runs of one trial (100 when the steps are not known)."""
    return objective.steps * len(objective.widths) * len(objective.seeds) or 100


def _worker_main(job: _Job, index: int) -> None:
    """Entry point of a spawned worker process: one torch thread, its own sampler seed."""
    import torch

    # Two processes with 2 OpenMP threads each on 2 cores train 5-10x slower (measured).
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(logging.ERROR)  # a spawned process of its own: nothing to restore
    # A lost storage or Ctrl-C/SIGTERM ends the worker with its own exit code (studies._workers).
    with _storage.storage_guard(job.url):
        study = _storage.reopen_study(job.url, job.study_name,
                                     sampler=make_sampler(job.sampler, job.seed + index, job.startup),
                                     pruner=make_pruner(job.pruner, _resource(job.objective)), heartbeat=job.heartbeat,
                                     reconnect=job.reconnect)
        _optimize_until_budget(study, job, _callbacks(job))


def _run_workers(job: _Job, n: int, progress: Progress) -> None:
    procs = _workers.start_workers(_worker_main, [(job, i) for i in range(n)],
                          fix="define the training function at module level (not a lambda or closure), "
                              "or use workers=1.")
    study = _storage.load_study(job.url, job.study_name, reconnect=job.reconnect)
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            progress.set_done(_storage.count_trials(study, (TrialState.COMPLETE, TrialState.PRUNED)), _best(study))
    except KeyboardInterrupt:
        _workers.stop_workers(procs)
        raise
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    _workers.raise_if_storage_lost(procs, job.url)
    _workers.raise_reported(procs, fallback=TuneError)  # the user's factory or train_fn raised: as in-process
    if bad:
        # The trials a crashed worker was running are still RUNNING: fail and re-queue them, and name them.
        lost = _storage.recover_stale(study)
        reason = f"; its running trial(s) {lost} are re-queued" if lost else ""
        raise WorkerError(f"{len(bad)} of {n} worker(s) crashed (exit codes {bad}: a negative code is the signal that "
                          f"killed it{_workers.interrupted_note(bad)}){reason}. Fix: rerun the same command to "
                          "continue (the study is kept); run with workers=1 to see an error in your code.")


def _best(study: optuna.Study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:
        return None


def _result(study: optuna.Study, url: str, st: Settings, seconds: float) -> TuneResult:
    rec, name = st.recipe, st.name
    trials = study.get_trials(deepcopy=False)
    reasons = {str(t.user_attrs.get("diverged_reason", "")) for t in trials if t.user_attrs.get("diverged")}
    if reasons and all(AT_INIT in r for r in reasons) and not any(
            t.state == TrialState.COMPLETE and not t.user_attrs.get("diverged") for t in trials):
        # NaN before any update in every trial: no learning rate can help
        raise TuneError(f"every trial in study {name!r} had a non-finite loss at initialization, before any "
                        "update: the model's output is not finite (not a learning-rate problem). Fix: check the "
                        "model's forward (a division by zero, a log of 0, an uninitialized tensor).")
    try:
        best = study.best_trial
    except ValueError:
        raise TuneError(
            f"study {name!r} has no finished, non-diverged trial ({len(trials)} trials; "
            f"{sum(bool(t.user_attrs.get('diverged')) for t in trials)} diverged). Fix: lower the learning-rate "
            "range in `search`, or raise `tune.trials`."
        ) from None
    if best.user_attrs.get("diverged"):
        raise TuneError(f"every finished trial in study {name!r} diverged. Fix: lower the learning-rate range.")
    return TuneResult(
        study_name=name, storage=url, best_values=rec.values(dict(best.params)), best_params=dict(best.params),
        best_value=float(best.values[0]),
        best_trial=best.number, n_complete=sum(t.state == TrialState.COMPLETE for t in trials),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_diverged=sum(bool(t.user_attrs.get("diverged")) for t in trials),
        n_failed=sum(t.state == TrialState.FAIL and not t.user_attrs.get("surplus") for t in trials),
        seconds=seconds, recipe=rec, diagnostics=list(st.diagnostics),
    )



