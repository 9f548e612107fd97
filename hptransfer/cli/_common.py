"""What several commands share: the recipe arguments (RECIPE, --set, --out, -q/-v, --threads)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_recipe_args", "recipe_overrides", "add_verbosity"]


def add_verbosity(p: argparse.ArgumentParser) -> None:
    """-q (warnings and errors only) and -v (debug lines too); the default shows status lines."""
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or status output, only warnings (for CI)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug output too")


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """RECIPE, --set, --out, -q/-v and --threads: shared by tune, transfer, run, worker and check."""
    p.add_argument("recipe", metavar="RECIPE", help="the YAML recipe (see docs/recipe_reference.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a recipe field, e.g. --set train.steps=50 (repeatable; value is YAML)")
    p.add_argument("--out", default=None, help="run folder (default: the recipe's `out`, else runs/<name>)")
    add_verbosity(p)
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads in this process (default 1: small models gain nothing from more, and "
                        "spin-waiting threads on a shared machine slowed the quickstart 30x)")


def recipe_overrides(args: argparse.Namespace, **fields: Any) -> list[str]:
    """--set overrides plus the dedicated options given (``fields``: recipe path -> value or None)."""
    extra = [f"{k}={v}" for k, v in fields.items() if v is not None]
    return list(args.overrides) + extra
