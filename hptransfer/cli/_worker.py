"""``hptransfer worker RECIPE --storage URL``: one tuning worker, the command a cluster job runs.

Start as many as you like, on any hosts that reach the database: each joins the recipe's study,
runs trials until the study holds ``tune.trials`` (complete + pruned + running) and exits 0. A
worker that is killed or freezes stops sending heartbeats (``tune.heartbeat`` seconds); after 4
missed ones the next trial start in any worker fails its trial and runs its parameters once more.
Each worker draws with its own sampler seed: ``tune.seed`` + ``--index`` (default
``$SLURM_ARRAY_TASK_ID``, else the process id). Rerunning continues the study. Exit codes as for
``tune``: 0 done, 2 bad input, 3 lost the database, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import ExitCode, StorageError
from ..recipe._reference import field_help
from ._common import add_recipe_args, recipe_overrides

__all__ = ["NAME", "HELP", "add_parser", "execute", "worker_index"]

NAME = "worker"
HELP = "run one tuning worker on a shared study (for cluster jobs: Slurm arrays, shell loops)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP, description=__doc__, epilog=field_help(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p)
    p.add_argument("--storage", default=None,
                   help="postgresql://user@host/db (password via PGPASSWORD or ~/.pgpass); default tune.storage")
    p.add_argument("--study", default=None, help="study name (default: the recipe name)")
    p.add_argument("--trials", type=int, default=None, metavar="N", help="study total (default: tune.trials)")
    p.add_argument("--index", type=int, default=None, metavar="I",
                   help="this worker's number: sampler seed tune.seed + I (default $SLURM_ARRAY_TASK_ID, else the pid)")
    return p


def worker_index(given: int | None) -> int:
    """``--index``, else ``$SLURM_ARRAY_TASK_ID``, else the process id (distinct on one host)."""
    if given is not None:
        return given
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    return int(task) if task.isdigit() else os.getpid()


def execute(args: argparse.Namespace) -> int:
    from .._io import redact_url
    from ..recipe import load_recipe
    from ..tuning import tune

    overrides = recipe_overrides(args, **{"tune.trials": args.trials, "tune.storage": args.storage,
                                          "tune.study": args.study})
    rec = load_recipe(args.recipe, overrides)
    if not rec.tune.storage:
        raise StorageError("hptransfer worker needs a shared storage: pass --storage postgresql://user@host/db (or "
                           "set tune.storage; a journal file works only on a filesystem every worker shares).")
    index = worker_index(args.index)
    try:
        res = tune(rec, workers=1, out=args.out, quiet=args.quiet, threads=args.threads,
                   seed=rec.tune.seed + index)
    except KeyboardInterrupt:
        print(f"\nhptransfer worker {index}: interrupted; the study is consistent.", file=sys.stderr)
        return ExitCode.INTERRUPTED
    print(f"worker {index}: study {res.study_name!r} in {redact_url(res.storage)} holds {res.n_complete} complete, "
          f"{res.n_pruned} pruned, {res.n_failed} failed trial(s); best loss {res.best_value:.4f} "
          f"(trial {res.best_trial})")
    return 0
