"""``hptransfer coord-check``: run :func:`hptransfer.coord_check` on a recipe or on a built-in model.

Everything becomes one recipe before the check runs: a tuning recipe (``recipes/*.yaml``, with
``--set`` overrides), or the options ``--model``, ``--task``, ``--lr``... (also read from a flat YAML
file of those option names, the older form), which stand for the recipe of a built-in model. Options
given on the command line win over the file's. Exit codes: docs/cli.md (0 pass, 1 fail, 2 bad input).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..errors import CoordCheckError, RecipeError, warn
from ._common import add_verbosity

__all__ = ["NAME", "HELP", "add_parser", "execute", "load_recipe_options", "OPTIONS"]

NAME = "coord-check"
HELP = "check that activations and their updates stay width-independent (μP coordinate check)"

#: Option name -> default (``None``: decided from the model; the LR and optimizer are the coordinate
#: check's own, :data:`hptransfer.coord.COORD_LR` and ``COORD_OPTIMIZER``). These are also the keys a
#: flat options file may set.
OPTIONS: dict[str, Any] = {
    "model": "mlp", "task": None, "widths": "64,128,256,512", "base_width": None, "parametrization": "mup",
    "steps": 4, "seeds": 3, "lr": None, "optimizer": None, "batch_size": None, "plot": None, "json": None,
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``coord-check`` on ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        NAME, help=HELP, description=HELP + ". Exit code 0: passed, 1: failed, 2: bad input.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # Defaults are None here so that execute() can tell "given" from "not given" and let a file
    # fill the gaps; the documented defaults live in OPTIONS.
    p.add_argument("recipe", nargs="?", metavar="RECIPE",
                   help="a tuning recipe (recipes/*.yaml: its model, task, parametrization, optimizer and "
                        "lr are used; widths default to proxy x 1, 2, 4, 8), or a flat YAML of the options below")
    p.add_argument("--model", help="built-in model: mlp, gpt, cnn, resglu (default mlp)")
    p.add_argument("--task", help="built-in task: classification, charlm (default: the model's own)")
    p.add_argument("--widths", help=f"comma-separated widths, at least two (default {OPTIONS['widths']})")
    p.add_argument("--base-width", dest="base_width", help="base width (default: the smallest width)")
    p.add_argument("--parametrization", help="mup, sp, depth-mup, completep (default: the recipe's, else mup)")
    p.add_argument("--steps", help=f"optimizer steps after init (default {OPTIONS['steps']})")
    p.add_argument("--seeds", help="number of seeds N (uses 0..N-1) or a comma list such as 0,5 (default 3)")
    p.add_argument("--lr", help="base learning rate (default: the recipe's; 0.01 for a built-in model)")
    p.add_argument("--optimizer", help="adam, adamw, sgd or muon (default: the recipe's; adam for a built-in model)")
    p.add_argument("--batch-size", dest="batch_size", help="batch size (default: the recipe's; 32, or 8 for gpt)")
    p.add_argument("--depths", help="with a tuning recipe that has `depths:`: sweep these depths (comma list) at "
                                    "the proxy width instead of widths")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="with a tuning recipe: override a recipe field, e.g. --set optimizer.name=muon (repeatable)")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the statistics per step")
    p.add_argument("--json", metavar="PATH", help="write the full result as JSON")
    add_verbosity(p)
    return p


def load_recipe_options(path: str | Path) -> dict[str, Any]:
    """Read a flat options file: a mapping from option names (``batch_size`` or ``batch-size``) to values.

    Raises:
        RecipeError: the file is missing or not YAML, not a mapping, or has unknown keys.
    """
    import yaml

    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RecipeError([("RECIPE", f"cannot read {source!r} ({exc.strerror}); pass an existing YAML file")],
                          source) from None
    except UnicodeDecodeError as exc:
        raise RecipeError([("RECIPE", f"{source!r} is not a text file (byte {exc.start} is not UTF-8); pass a YAML "
                                      "file")], source) from None
    except yaml.YAMLError as exc:
        raise RecipeError([("RECIPE", f"not valid YAML: {exc}")], source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError([("RECIPE", "the top level must be a mapping of option names to values")], source)
    out = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = [(str(k), f"unknown option; known: {', '.join(OPTIONS)}") for k in out if k not in OPTIONS]
    if unknown:
        raise RecipeError(unknown, source)
    return out


def execute(args: argparse.Namespace) -> int:
    """Run the check; print the summary; write --plot/--json; return 0 (pass) or 1 (fail)."""
    from ..coord import coord_check
    from ._main import check_output_paths

    check_output_paths(plot=args.plot, json=args.json)
    full = bool(args.recipe) and _is_full_recipe(args.recipe)
    spec, widths, depths, opts = _recipe_run(args) if full else _options_run(args)
    where = {k: f"--{k}" if getattr(args, k, None) is not None else f"{k} (in {args.recipe})" for k in OPTIONS}
    result = coord_check(spec, widths=widths, depths=depths, steps=_number(opts["steps"], where["steps"], int),
                         seeds=_seeds(opts["seeds"], where["seeds"]), batch_size=spec.train.batch_size)
    print(result.summary())
    if opts["plot"]:
        check_output_paths(plot=opts["plot"], json=opts["json"])  # a file's paths are checked only now
        print(f"plot: {result.plot(opts['plot'])}")
    if opts["json"]:
        write_text_atomic(Path(opts["json"]), json.dumps(result.to_dict(), indent=1, allow_nan=False))
        print(f"json: {opts['json']}")
    return 0 if result.passed else 1


def _is_full_recipe(path: str) -> bool:
    """A tuning recipe has a ``model:`` mapping; a flat options file has ``model: mlp``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False  # let the flat loader report the problem with its field path
    return isinstance(data, dict) and isinstance(data.get("model"), dict)


def _recipe_run(args: argparse.Namespace) -> tuple[Any, list[int], list[int] | None, dict[str, Any]]:
    """A tuning recipe: each width is the recipe's run spec (``Recipe.at``); options override its LR,
    optimizer, parametrization and batch size."""
    from ..diagnostics import diagnose
    from ..recipe import load_recipe

    recipe = load_recipe(args.recipe, list(args.overrides or []))
    if recipe.task.train_fn is not None:
        raise CoordCheckError(
            f"{args.recipe}: task.train_fn is a custom training function, which coord-check cannot step. Fix: "
            "use hptransfer.coord_check(factory, batch_fn=..., loss_fn=...) from Python.")
    proxy = recipe.widths.proxy[0]
    widths = _int_list(args.widths, "--widths") if args.widths else [proxy * 2**k for k in range(4)]
    spec = recipe.at(min(widths)).replace(**_changes(args, base_width=min(widths),
                                                    batch_size=recipe.train.batch_size))
    depths = _int_list(args.depths, "--depths") if args.depths else None
    if depths is not None and spec.depth is None:
        raise CoordCheckError(f"--depths needs a recipe with a `depths:` section ({args.recipe} has none). Fix: add "
                              "`depths: {proxy: 2, target: 8}` and `model.depth_arg` if the factory's is not `depth`.")
    for d in diagnose(recipe):  # known breakers, once the input is known to be good
        warn(str(d), key=d.key)
    given = {k: getattr(args, k) for k in ("steps", "seeds", "plot", "json")}
    return spec, [proxy] if depths else widths, depths, {**OPTIONS, **{k: v for k, v in given.items() if v is not None}}


def _options_run(args: argparse.Namespace) -> tuple[Any, list[int], None, dict[str, Any]]:
    """``--model`` and the other options (or a flat options file): the recipe of a built-in model."""
    from ..coord import COORD_LR, COORD_OPTIMIZER
    from ..recipe import parse_recipe
    from ..zoo.models import MODEL_TASKS, MODELS

    filed = load_recipe_options(args.recipe) if args.recipe else {}  # first: a broken file is the problem to name
    if args.overrides:
        raise CoordCheckError("--set overrides fields of a tuning recipe; give one as RECIPE (recipes/*.yaml), or use "
                              "the options (--lr, --optimizer, ...) for a built-in model.")
    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k, None) is not None}
    opts = {**OPTIONS, **filed, **given}
    where = {k: ("--" + k.replace("_", "-")) if k in given else (f"{k} (in {args.recipe})" if k in filed else k)
             for k in OPTIONS}
    model = _choice(opts["model"], tuple(MODELS), where["model"])
    own = MODEL_TASKS[model]
    task = _choice(opts["task"] or own, ("classification", "charlm"), where["task"])
    if task != own and not (own == "images" and task == "classification"):  # images: the same data as a grid
        raise CoordCheckError(f"{where['task']}={task!r} does not fit model {model!r}. Fix: use --task "
                              f"{'classification' if own == 'images' else own}, or drop --task.")
    widths = _int_list(opts["widths"], where["widths"])
    if len(set(widths)) < 2:
        raise CoordCheckError(f"{where['widths']} needs at least two distinct widths. Fix: e.g. --widths 64,128,256.")
    step = {"gpt": 4, "cnn": 4}.get(model, 1)  # gpt: 4 heads; cnn: GroupNorm(4)
    bad = [w for w in widths if w % step]
    if bad:
        raise CoordCheckError(f"{where['widths']}: width(s) {', '.join(map(str, bad))} are not multiples of {step}, "
                              f"which model {model!r} needs. Fix: use multiples of {step}, e.g. --widths 64,128,256.")
    data: dict[str, Any] = {
        "name": "coord-check", "model": {"name": model}, "task": {"name": own},
        "parametrization": {"name": _choice(str(opts["parametrization"]).lower(), ("mup", "sp", "depth-mup",
                                                                                  "completep"),
                                            where["parametrization"])},
        "optimizer": {"name": _choice(str(opts["optimizer"] or COORD_OPTIMIZER).lower(),
                                      ("adam", "adamw", "sgd", "muon"), where["optimizer"]),
                      "lr": _number(opts["lr"] or COORD_LR, where["lr"], float)},
        "train": {"steps": 1, "batch_size": _number(opts["batch_size"] or (8 if model == "gpt" else 32),
                                                     where["batch_size"], int)},
        "widths": {"proxy": [min(widths)], "target": [max(widths)]},
    }
    base = _number(opts["base_width"], where["base_width"], int) if opts["base_width"] is not None else min(widths)
    data["parametrization"]["base_width"] = base
    return parse_recipe(data, source="hptransfer coord-check").at(min(widths)), widths, None, opts


def _changes(args: argparse.Namespace, *, base_width: int, batch_size: int | None) -> dict[str, Any]:
    """Spec fields the options set on a tuning recipe's run."""
    from ..parametrization import available_parametrizations

    out: dict[str, Any] = {
        "parametrization.base_width": _number(args.base_width, "--base-width", int) if args.base_width else base_width,
        "train.batch_size": _number(args.batch_size, "--batch-size", int) if args.batch_size else batch_size,
    }
    if args.parametrization:
        out["parametrization.name"] = _choice(str(args.parametrization).lower(), tuple(available_parametrizations()),
                                              "--parametrization")
    if args.optimizer:
        out["optimizer.name"] = _choice(str(args.optimizer).lower(), ("adam", "adamw", "sgd", "muon"), "--optimizer")
    if args.lr:
        out["optimizer.lr"] = _number(args.lr, "--lr", float)
    return out


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise CoordCheckError(f"{where}={value!r} is not an option. Fix: use one of {', '.join(choices)}.")
    return str(value)


def _number(value: Any, where: str, kind: type) -> Any:
    try:
        if isinstance(value, bool):
            raise ValueError
        num = kind(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise CoordCheckError(
            f"{where}={value!r} is not {'an integer' if kind is int else 'a number'}. Fix: pass e.g. "
            f"{where.split(' ')[0]} {'4' if kind is int else '0.01'}."
        ) from None
    if not (math.isfinite(num) and num > 0):
        raise CoordCheckError(f"{where}={value!r} must be positive.")
    return num


def _int_list(value: Any, where: str) -> list[int]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        out = [int(str(v).strip()) for v in items]
    except (TypeError, ValueError):
        raise CoordCheckError(
            f"{where}={value!r} is not a comma-separated list of integers. Fix: e.g. --widths 64,128,256,512."
        ) from None
    if any(v < 1 for v in out):
        raise CoordCheckError(f"{where}={value!r}: every entry must be >= 1.")
    return out


def _seeds(value: Any, where: str) -> list[int]:
    """``3`` -> [0, 1, 2]; ``"0,5"`` or ``[0, 5]`` -> [0, 5]."""
    if isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value):
        try:
            out = [int(str(v).strip()) for v in (value.split(",") if isinstance(value, str) else value)]
        except (TypeError, ValueError):
            raise CoordCheckError(f"{where}={value!r} is not a list of integers. Fix: e.g. --seeds 0,1,2.") from None
        if any(v < 0 for v in out):
            raise CoordCheckError(f"{where}={value!r}: seeds must be >= 0.")
        return out
    return list(range(_number(value, where, int)))
