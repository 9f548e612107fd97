"""Fault tolerance on PostgreSQL, measured: trials lost, duplicates, retries, time per trial.

Three runs of ``hptransfer worker`` processes (each in its own process group, as on separate
hosts) on one study each, in a fresh database on the server given by ``--storage``:

1. ``one``: 1 worker, ``--trials`` trials. Time per trial = wall time / trials.
2. ``three``: 3 workers, the same budget. Time per trial = wall time / trials (the machine's
   cores are shared, so 3 workers are not 3x faster on a 2-core machine).
3. ``frozen``: 3 workers; when trials run, one worker is frozen with SIGSTOP (a host that
   vanished: no heartbeat, no exit) and killed with SIGKILL once the others have exited.

Reported per run: complete trials vs the budget (lost = budget - complete), duplicate trial
numbers, duplicate evaluations (two COMPLETE trials with identical parameters), retries (trials
re-run by the heartbeat callback) and the trials failed.

Usage: ``python scripts/fault_tolerance.py --storage postgresql://postgres@127.0.0.1:55432/postgres
[--trials 24] [--steps 60] [--quick]``; writes ``docs/bench/fault_tolerance.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]


def _sql(url: str, *statements: str) -> None:
    import psycopg

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, password=u.password,
                         autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def _recipe(tmp: Path, name: str, url: str, trials: int, steps: int) -> Path:
    data = {
        "name": name, "out": str(tmp / name),
        "model": {"name": "mlp"}, "task": {"name": "classification", "kwargs": {"n_train": 512, "n_val": 256}},
        "train": {"batch_size": 32, "steps": steps}, "widths": {"proxy": 16, "target": 64},
        "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}},
        "tune": {"trials": trials, "sampler": "gp", "startup_trials": 4, "storage": url, "heartbeat": 1},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start(recipe: Path, n: int) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return [subprocess.Popen([sys.executable, "-m", "hptransfer", "worker", str(recipe), "-q", "--index", str(i)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True) for i in range(n)]


def _freeze_one(url: str, name: str, procs: list[subprocess.Popen]) -> tuple[subprocess.Popen, int]:
    pids = {p.pid: p for p in procs}
    while True:
        time.sleep(0.3)
        try:
            study = optuna.load_study(study_name=name, storage=url)
        except KeyError:
            continue
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker_pid") in pids:
                victim = pids[t.user_attrs["worker_pid"]]
                os.killpg(victim.pid, signal.SIGSTOP)
                return victim, t.number


def _count(url: str, name: str, budget: int) -> dict:
    trials = [t for t in optuna.load_study(study_name=name, storage=url).get_trials()
              if not t.user_attrs.get("surplus")]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    numbers = collections.Counter(t.number for t in trials)
    points = collections.Counter(tuple(sorted(t.params.items())) for t in complete)
    return {"budget": budget, "complete": len(complete), "lost": budget - len(complete),
            "duplicate_numbers": sum(c - 1 for c in numbers.values()),
            "duplicate_evaluations": sum(c - 1 for c in points.values()),
            "retries": sum("failed_trial" in t.system_attrs for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials)}


def run_case(url: str, tmp: Path, case: str, trials: int, steps: int) -> dict:
    name = f"ft-{case}-{uuid.uuid4().hex[:6]}"
    procs = _start(_recipe(tmp, name, url, trials, steps), 1 if case == "one" else 3)
    start = time.perf_counter()
    frozen = None
    if case == "frozen":
        victim, frozen = _freeze_one(url, name, procs)
        procs_to_wait = [p for p in procs if p is not victim]
    else:
        victim, procs_to_wait = None, procs
    codes = [p.wait(timeout=1800) for p in procs_to_wait]
    seconds = time.perf_counter() - start
    if victim is not None:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    out = {"case": case, "workers": len(procs), "exit_codes": codes, "seconds": round(seconds, 2),
           "seconds_per_trial": round(seconds / trials, 3), "frozen_trial": frozen, **_count(url, name, trials)}
    print(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", default=os.environ.get("HPT_TEST_POSTGRES_URL"),
                    help="a PostgreSQL URL whose user may create databases (default $HPT_TEST_POSTGRES_URL)")
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="12 trials of 30 steps")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench"))
    args = ap.parse_args()
    if not args.storage:
        sys.exit("fault_tolerance.py: error: pass --storage postgresql://... (or set HPT_TEST_POSTGRES_URL).")
    trials, steps = (12, 30) if args.quick else (args.trials, args.steps)
    db = f"hptft_{uuid.uuid4().hex[:8]}"
    _sql(args.storage, f"CREATE DATABASE {db}")
    url = make_url(args.storage).set(database=db).render_as_string(hide_password=False)
    tmp = Path(args.out) / "_fault_tolerance_runs"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        rows = [run_case(url, tmp, case, trials, steps) for case in ("one", "three", "frozen")]
    finally:
        _sql(args.storage, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    command = "python scripts/fault_tolerance.py --storage URL" + (" --quick" if args.quick else
                                                                   f" --trials {trials} --steps {steps}")
    report = {"command": command, "trials": trials, "steps": steps, "cpus": os.cpu_count(), "runs": rows}
    out = Path(args.out)
    (out / "fault_tolerance.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Fault tolerance on PostgreSQL\n\n`{command}` ({trials} trials of {steps} steps, MLP width 16, "
             f"{os.cpu_count()} CPUs shared with other jobs; heartbeat 1 s, stale after 4 s).\n",
             "| run | workers | complete / budget | lost | duplicate numbers | duplicate evaluations | retries | "
             "failed | s per trial |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['workers']} | {r['complete']} / {r['budget']} | {r['lost']} | "
                     f"{r['duplicate_numbers']} | {r['duplicate_evaluations']} | {r['retries']} | {r['failed']} | "
                     f"{r['seconds_per_trial']} |")
    (out / "fault_tolerance.md").write_text("\n".join(lines) + "\n")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
