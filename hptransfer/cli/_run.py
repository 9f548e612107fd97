"""``hptransfer run RECIPE``: the whole job -- tune, transfer, one target run, check, report.

Writes the run folder (study, best.yaml, target.yaml, plots, summary.md). Exit 0 when the
target run converged and beat the proxy, 1 when that check failed or is inconclusive (the best
proxy loss is within 5% of an untrained predictor's: nothing was learned), 2 for a bad recipe,
3/4 for a lost database or a crashed worker, 130 when interrupted (run again to resume).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ExitCode
from ..recipe._reference import field_help
from ._common import add_recipe_args, recipe_overrides

__all__ = ["NAME", "HELP", "add_parser", "execute"]

NAME = "run"
HELP = "tune, transfer, train the target once and check it; writes a run folder with summary.md"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP, description=__doc__, epilog=field_help(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p)
    p.add_argument("--workers", type=int, default=None, metavar="N", help="local tuning processes")
    p.add_argument("--trials", type=int, default=None, metavar="N", help="total trials (default: tune.trials)")
    return p


def execute(args: argparse.Namespace) -> int:
    from ..targets import run as run_job

    if args.workers is not None and args.workers < 1:
        print("hptransfer run: error: --workers must be >= 1.", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        res = run_job(args.recipe, workers=args.workers, out=args.out, quiet=args.quiet, threads=args.threads,
                      overrides=recipe_overrides(args, **{"tune.trials": args.trials}))
    except KeyboardInterrupt:
        print("\nhptransfer run: interrupted; the study is consistent. Run the same command to continue.",
              file=sys.stderr)
        return ExitCode.INTERRUPTED
    print(f"{res.verdict.upper()}: {res.check_text}")
    print(f"summary: {res.run_dir / 'summary.md'}")
    return ExitCode.OK if res.check_passed else ExitCode.FAIL
