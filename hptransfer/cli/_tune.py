"""``hptransfer tune RECIPE``: run (or resume) the recipe's Optuna study on the proxy.

Running the same command again continues the study up to ``tune.trials`` in total. Ctrl-C
leaves a consistent study (the interrupted trials are re-queued on the next start); exit 130.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ExitCode
from ..recipe._reference import field_help
from ..recipe._sections import PRUNERS, SAMPLERS
from ._common import add_recipe_args, recipe_overrides

__all__ = ["NAME", "HELP", "add_parser", "execute"]

NAME = "tune"
HELP = "tune the proxy's hyperparameters with Optuna (resumable)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP, description=__doc__, epilog=field_help(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p)
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes, each with its own sampler seed (default: tune.workers)")
    p.add_argument("--trials", type=int, default=None, metavar="N", help="total trials (default: tune.trials)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None, help="sampler (default: tune.sampler, gp)")
    p.add_argument("--pruner", choices=PRUNERS, default=None, help="pruner (default: tune.pruner, none)")
    p.add_argument("--storage", default=None, help="journal file path, journal:///path or postgresql://...")
    p.add_argument("--study", default=None, help="study name (default: the recipe name)")
    return p


def execute(args: argparse.Namespace) -> int:
    from .._io import redact_url
    from ..tuning import tune

    if args.workers is not None and args.workers < 1:
        print("hptransfer tune: error: --workers must be >= 1.", file=sys.stderr)
        return ExitCode.BAD_INPUT
    overrides = recipe_overrides(args, **{"tune.trials": args.trials, "tune.sampler": args.sampler,
                                          "tune.pruner": args.pruner, "tune.storage": args.storage,
                                          "tune.study": args.study})
    try:
        res = tune(args.recipe, workers=args.workers, out=args.out, overrides=overrides, quiet=args.quiet,
                   threads=args.threads)
    except KeyboardInterrupt:
        print("\nhptransfer tune: interrupted; the study is consistent. Run the same command to continue.",
              file=sys.stderr)
        return ExitCode.INTERRUPTED
    print(f"best loss {res.best_value:.4f} (trial {res.best_trial}): "
          + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.best_params.items()))
    print(f"{res.n_complete} complete, {res.n_pruned} pruned, {res.n_diverged} diverged, {res.n_failed} failed; "
          f"study {res.study_name!r} in {redact_url(res.storage)}")
    return 0
