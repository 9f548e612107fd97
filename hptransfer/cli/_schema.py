"""``hptransfer schema``: print the recipe JSON Schema (or the reference page) for editors and docs.

``hptransfer schema > recipe.schema.json``, then start a recipe with
``# yaml-language-server: $schema=recipe.schema.json`` to get completion and checking in any
editor with a YAML language server. ``--reference`` prints docs/recipe_reference.md instead, ``--target``
the schema of ``target.yaml``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["NAME", "HELP", "add_parser", "execute"]

NAME = "schema"
HELP = "print the recipe JSON Schema (for editors) or, with --reference, the recipe reference page"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", action="store_true", help="print the Markdown reference page instead")
    p.add_argument("--target", action="store_true", help="print the JSON Schema of target.yaml instead")
    return p


def execute(args: argparse.Namespace) -> int:
    from ..recipe import json_schema, reference

    if args.target:
        from ..targets._target_file import target_schema

        print(json.dumps(target_schema(), indent=2))
    else:
        print(reference() if args.reference else json.dumps(json_schema(), indent=2))
    return 0
