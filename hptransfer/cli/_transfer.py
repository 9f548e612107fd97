"""``hptransfer transfer RECIPE``: write target.yaml with the best proxy values at each target width.

Needs the study from ``hptransfer tune RECIPE``. Warns loudly when the target's batch size or
steps differ from the proxy's; ``--law`` opts in to an empirical LR law (citation printed).
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_recipe_args, recipe_overrides

__all__ = ["NAME", "HELP", "add_parser", "execute"]

NAME = "transfer"
HELP = "write target.yaml: the best proxy values carried to the target width(s)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p)
    p.add_argument("--width", type=int, action="append", default=None, metavar="W",
                   help="target width (repeatable; default: widths.target)")
    p.add_argument("--batch-size", type=int, default=None, help="target batch size (default: transfer.batch_size)")
    p.add_argument("--steps", type=int, default=None, help="target steps (default: transfer.steps)")
    p.add_argument("--law", choices=("none", "step_law", "deepseek"), default=None,
                   help="opt-in LR law when batch size/steps change (default: transfer.law, none)")
    return p


def execute(args: argparse.Namespace) -> int:
    from ..recipe import amend, load_recipe
    from ..targets import transfer

    rec = load_recipe(args.recipe, recipe_overrides(args, **{"transfer.batch_size": args.batch_size,
                                                             "transfer.steps": args.steps,
                                                             "transfer.law": args.law}))
    if args.out is not None:
        rec = amend(rec, data={"out": args.out})
    targets = transfer(rec, target_widths=args.width, quiet=args.quiet)
    for t in targets:
        lr = t.values.get("lr")
        print(f"width {t.width}: {t.path}" + (f"  lr={lr:.4g}" if isinstance(lr, float) else ""))
    return 0
