"""``hptransfer check RECIPE``: does the optimal LR (and init, multipliers) stay put with width?

Sweeps the recipe's ``check:`` grid at 3+ widths and 2+ seeds as Optuna grid studies in the
tuner's storage (rerun to resume; ``--workers N`` for parallel processes), estimates each
width's optimum with a bootstrap interval and prints the verdict.

Exit codes: 0 every gated parametrization met its expectation (pass), 1 one did not (fail or
"grid too narrow"), 2 bad input. ``--compare sp,mup`` runs both on the same grid; the
recipe's own parametrization is gated, the others are reported unless ``--expect sp=fail``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import CheckError, info
from ._common import add_recipe_args, recipe_overrides

__all__ = ["NAME", "HELP", "add_parser", "execute"]

NAME = "check"
HELP = "verify hyperparameter transfer: optimum vs width, with a verdict (CI gate)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``check`` on ``subparsers`` and return its parser."""
    from ..recipe._reference import field_help

    p = subparsers.add_parser(NAME, help=HELP, description=__doc__, epilog=field_help(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p)
    p.add_argument("--compare", default=None, metavar="P1,P2",
                   help="parametrizations side by side on the same grid, e.g. sp,mup (default: the recipe's)")
    p.add_argument("--expect", action="append", default=[], metavar="PARAM=VERDICT",
                   help="expected verdict (pass, fail, any) of a parametrization, e.g. --expect sp=fail "
                        "(repeatable); default: the recipe's must pass, compared ones are reported")
    p.add_argument("--widths", default=None, metavar="W1,W2,...", help="widths (default: check.widths)")
    p.add_argument("--axis", choices=("width", "depth"), default="width",
                   help="sweep width (default) or depth (check.depths at the smallest proxy width; needs `depths:`)")
    p.add_argument("--depths", default=None, metavar="D1,D2,...", help="depths for --axis depth (default: "
                   "check.depths)")
    p.add_argument("--seeds", default=None, metavar="S1,S2,...", help="seeds (default: check.seeds)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes of the grid strategy (default: check.workers, auto = one per core)")
    p.add_argument("--strategy", choices=("grid", "adaptive"), default=None,
                   help="grid: every grid point; adaptive: bracket the optimum per width and run only the points "
                        "the analysis reads, stopping hopeless runs early (default: check.strategy)")
    p.add_argument("--storage", default=None, help="journal file path, journal:///path or postgresql://...")
    p.add_argument("--json", default=None, metavar="PATH", help="write the full report as JSON")
    p.add_argument("--junit-xml", dest="junit_xml", default=None, metavar="PATH",
                   help="write a JUnit XML report (one test case per parametrization and HP)")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="write the figure(s): PATH for the LR; PATH with _<hp> inserted for other HPs")
    return p


def _list(text: str | None) -> str | None:
    return None if text is None else "[" + text + "]"


def _expect(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise CheckError(f"--expect {item!r} must look like PARAM=VERDICT, e.g. --expect sp=fail.")
        out[key.strip()] = value.strip()
    return out


def execute(args: argparse.Namespace) -> int:
    from ..check import check_recipe
    from ..recipe import load_recipe
    from ._main import check_output_paths

    if args.workers is not None and args.workers < 1:
        raise CheckError("--workers must be >= 1.")
    check_output_paths(json=args.json, junit_xml=args.junit_xml, plot=args.plot)
    overrides = recipe_overrides(args, **{"check.widths": _list(args.widths), "check.seeds": _list(args.seeds),
                                          "check.depths": _list(args.depths), "out": args.out})
    recipe = load_recipe(args.recipe, overrides)
    compare = [p.strip() for p in args.compare.split(",") if p.strip()] if args.compare else None
    expect = _expect(args.expect)
    if compare:
        unknown = [p for p in expect if p not in compare]
        if unknown:
            raise CheckError(f"--expect names {unknown} which --compare does not run. Fix: add them to --compare.")
    say = None if args.quiet else info
    report = check_recipe(recipe, compare=compare, expect=expect, workers=args.workers, storage=args.storage,
                          progress=say, strategy=args.strategy, axis=args.axis)
    print(report.summary())
    if args.json:
        report.to_json(args.json)
    if args.junit_xml:
        report.junit_xml(args.junit_xml)
    if args.plot:
        base = Path(args.plot)
        for hp in dict.fromkeys(r.hp for r in report.results):
            path = base if hp == "lr" else base.with_name(f"{base.stem}_{hp}{base.suffix or '.png'}")
            print(f"figure: {report.plot(path, hp=hp)}")
    return 0 if report.passed else 1
