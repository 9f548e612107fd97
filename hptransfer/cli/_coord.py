"""``hptransfer coord-check``: run :func:`hptransfer.coord_check` on a built-in model.

Options come from the command line, from an optional RECIPE (a YAML file whose top-level keys
are the option names, e.g. ``widths: [64, 128, 256]``), or from the defaults, in that order of
precedence. Exit code 0 when the check passes, 1 when it fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..errors import CoordCheckError, RecipeError

__all__ = ["NAME", "HELP", "add_parser", "run", "load_recipe_options", "OPTIONS"]

NAME = "coord-check"
HELP = "check that activations and their updates stay width-independent (μP coordinate check)"

MODELS = ("mlp", "gpt", "cnn", "resglu")
TASKS = ("classification", "charlm")
#: The task each built-in model trains on unless --task says otherwise.
DEFAULT_TASK = {"mlp": "classification", "gpt": "charlm", "cnn": "classification", "resglu": "classification"}
#: Tasks each built-in model can consume.
COMPATIBLE = {"mlp": ("classification",), "gpt": ("charlm",), "cnn": ("classification",),
              "resglu": ("classification",)}

#: Option name -> default (``None``: decided from the model). These are also the keys a RECIPE
#: may set.
OPTIONS: dict[str, Any] = {
    "model": "mlp",
    "task": None,
    "widths": "64,128,256,512",
    "base_width": None,
    "parametrization": "mup",
    "steps": 4,
    "seeds": 3,
    "lr": 1e-2,
    "optimizer": "adam",
    "batch_size": None,
    "plot": None,
    "json": None,
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``coord-check`` on ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        NAME, help=HELP, description=HELP + ". Exit code 0: passed, 1: failed, 2: bad input.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # Defaults are None here so that run() can tell "given" from "not given" and let a
    # RECIPE fill the gaps; the documented defaults live in OPTIONS.
    p.add_argument("recipe", nargs="?", metavar="RECIPE",
                   help="a tuning recipe (recipes/*.yaml: its model, task, parametrization, optimizer and "
                        "lr are used; widths default to proxy x 1, 2, 4, 8), or a flat YAML of the options below")
    p.add_argument("--model", help=f"built-in model: {', '.join(MODELS)} (default {OPTIONS['model']})")
    p.add_argument("--task", help=f"built-in task: {', '.join(TASKS)} (default: the model's own)")
    p.add_argument("--widths", help=f"comma-separated widths, at least two (default {OPTIONS['widths']})")
    p.add_argument("--base-width", dest="base_width", help="base width (default: the smallest width)")
    p.add_argument("--parametrization", help="mup or sp (default mup)")
    p.add_argument("--steps", help=f"optimizer steps after init (default {OPTIONS['steps']})")
    p.add_argument("--seeds", help="number of seeds N (uses 0..N-1) or a comma list such as 0,5 (default 3)")
    p.add_argument("--lr", help=f"base learning rate (default {OPTIONS['lr']:g})")
    p.add_argument("--optimizer", help="adam, adamw or sgd (default adam)")
    p.add_argument("--batch-size", dest="batch_size", help="batch size (default 32; 8 for gpt)")
    p.add_argument("--depths", help="with a tuning recipe that has `depths:`: sweep these depths (comma list) at "
                                    "the proxy width instead of widths")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="with a tuning recipe: override a recipe field, e.g. --set optimizer.name=muon (repeatable)")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the statistics per step")
    p.add_argument("--json", metavar="PATH", help="write the full result as JSON")
    return p


def load_recipe_options(path: str | Path) -> dict[str, Any]:
    """Read a flat YAML RECIPE: a mapping from option names (``batch_size`` or ``batch-size``)
    to values. Kept as one function so that a full recipe parser can replace it.

    Raises:
        RecipeError: the file is missing or not YAML, not a mapping, or has unknown keys.
    """
    import yaml

    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError([("RECIPE", f"cannot read {source!r} ({exc.strerror}); pass an existing YAML file")],
                          source) from None
    except UnicodeDecodeError as exc:
        raise RecipeError([("RECIPE", f"{source!r} is not a text file (byte {exc.start} is not UTF-8); pass a YAML "
                                      "file")], source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError([("RECIPE", f"not valid YAML: {exc}")], source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError([("RECIPE", "the top level must be a mapping of option names to values")], source)
    out: dict[str, Any] = {}
    problems = []
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in OPTIONS:
            problems.append((str(key), f"unknown option; known: {', '.join(OPTIONS)}"))
        else:
            out[name] = value
    if problems:
        raise RecipeError(problems, source)
    return out


def run(args: argparse.Namespace) -> int:
    """Run the check; print the summary; write --plot/--json; return 0 (pass) or 1 (fail)."""
    from ..coord import coord_check
    from ._main import check_output_paths

    check_output_paths(plot=args.plot, json=args.json)
    if args.recipe and _is_full_recipe(args.recipe):
        return _run_full_recipe(args)
    recipe = load_recipe_options(args.recipe) if args.recipe else {}  # first: a broken file is the problem to name
    if getattr(args, "overrides", None):
        raise CoordCheckError("--set overrides fields of a tuning recipe; give one as RECIPE (recipes/*.yaml), or use "
                              "the options (--lr, --optimizer, ...) for a built-in model.")
    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k, None) is not None}
    opts = {**OPTIONS, **recipe, **given}
    where = {k: ("--" + k.replace("_", "-")) if k in given else (f"{k} (in {args.recipe})" if k in recipe else k)
             for k in OPTIONS}

    model = _choice(opts["model"], MODELS, where["model"])
    task_name = _choice(opts["task"] or DEFAULT_TASK[model], TASKS, where["task"])
    if task_name not in COMPATIBLE[model]:
        raise CoordCheckError(
            f"{where['task']}={task_name!r} does not fit model {model!r}. Fix: use --task "
            f"{' or '.join(COMPATIBLE[model])}, or drop --task."
        )
    widths = _int_list(opts["widths"], where["widths"], minimum=1)
    if len(set(widths)) < 2:
        raise CoordCheckError(f"{where['widths']} needs at least two distinct widths. Fix: e.g. --widths 64,128,256.")
    base_width = None if opts["base_width"] is None else _number(opts["base_width"], where["base_width"], int)
    param = _choice(str(opts["parametrization"]).lower(), ("mup", "sp"), where["parametrization"])
    steps = _number(opts["steps"], where["steps"], int)
    seeds = _seeds(opts["seeds"], where["seeds"])
    lr = _number(opts["lr"], where["lr"], float)
    optimizer = _choice(str(opts["optimizer"]).lower(), ("adam", "adamw", "sgd"), where["optimizer"])
    batch_size = _number(opts["batch_size"] or (8 if model == "gpt" else 32), where["batch_size"], int)

    factory, task = _model_and_task(model, task_name)
    _check_widths_fit(model, widths, where["widths"])
    result = coord_check(factory, widths=widths, base_width=base_width, parametrization=param, task=task,
                         steps=steps, seeds=seeds, lr=lr, optimizer=optimizer, batch_size=batch_size)
    return _report(result, opts["plot"], opts["json"])


def _is_full_recipe(path: str) -> bool:
    """A tuning recipe has a ``model:`` mapping; a flat options file has ``model: mlp``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False  # let the flat loader report the problem with its field path
    return isinstance(data, dict) and isinstance(data.get("model"), dict)


def _run_full_recipe(args: argparse.Namespace) -> int:
    """coord-check on a tuning recipe: each width is the recipe's run spec (``Recipe.at``), built by
    the one build path; command-line options override the spec's LR, optimizer and parametrization."""
    from ..coord import coord_check
    from ..diagnostics import diagnose
    from ..recipe import load_recipe

    recipe = load_recipe(args.recipe, list(getattr(args, "overrides", None) or []))
    if recipe.task.name is None:
        raise CoordCheckError(
            f"{args.recipe}: task.train_fn is a custom training function, which coord-check cannot step. Fix: "
            "use hptransfer.coord_check(factory, batch_fn=..., loss_fn=...) from Python."
        )
    proxy = recipe.widths.proxy[0]
    widths = _int_list(args.widths, "--widths", minimum=1) if args.widths else [proxy * 2**k for k in range(4)]
    changes: dict[str, Any] = {
        "parametrization.base_width": _number(args.base_width, "--base-width", int) if args.base_width
        else min(widths),
        "train.batch_size": _number(args.batch_size, "--batch-size", int) if args.batch_size
        else recipe.train.batch_size,
    }
    if args.parametrization:
        from ..parametrization import available_parametrizations

        changes["parametrization.name"] = _choice(str(args.parametrization).lower(),
                                                  tuple(available_parametrizations()), "--parametrization")
    if args.optimizer:
        changes["optimizer.name"] = _choice(str(args.optimizer).lower(), ("adam", "adamw", "sgd", "muon"),
                                            "--optimizer")
    if args.lr:
        changes["optimizer.lr"] = _number(args.lr, "--lr", float)
    spec = recipe.at(min(widths)).replace(**changes)
    depths = _int_list(args.depths, "--depths", minimum=1) if getattr(args, "depths", None) else None
    if depths is not None and spec.depth is None:
        raise CoordCheckError(f"--depths needs a recipe with a `depths:` section ({args.recipe} has none). Fix: add "
                              "`depths: {proxy: 2, target: 8}` and `model.depth_arg` if the factory's is not `depth`.")
    for d in diagnose(recipe):  # known breakers, once the input is known to be good
        print(f"warning: {d}", file=sys.stderr)
    result = coord_check(spec, widths=[proxy] if depths else widths, depths=depths,
                         steps=_number(args.steps or OPTIONS["steps"], "--steps", int),
                         seeds=_seeds(args.seeds or OPTIONS["seeds"], "--seeds"), batch_size=spec.train.batch_size)
    return _report(result, args.plot, args.json)


def _report(result: Any, plot: str | None, json_path: str | None) -> int:
    print(result.summary())
    if plot:
        print(f"plot: {result.plot(plot)}")
    if json_path:
        path = Path(str(json_path))
        write_text_atomic(path, json.dumps(result.to_dict(), indent=1, allow_nan=False))
        print(f"json: {path}")
    return 0 if result.passed else 1


def _model_and_task(model: str, task_name: str) -> tuple[Any, Any]:
    from ..zoo import models
    from ..zoo.tasks import get_task

    # The CNN reads the classification data laid out as images (same data and labels).
    task = get_task("images" if model == "cnn" else task_name)
    return functools.partial(models.get_model(model), **task.model_kwargs()), task


def _check_widths_fit(model: str, widths: list[int], where: str) -> None:
    """Catch widths the built-in factories refuse, with the CLI option in the message."""
    step = {"gpt": 4, "cnn": 4}.get(model, 1)  # gpt: 4 heads; cnn: GroupNorm(4)
    bad = [w for w in widths if w % step]
    if bad:
        raise CoordCheckError(
            f"{where}: width(s) {', '.join(map(str, bad))} are not multiples of {step}, which model {model!r} "
            f"needs. Fix: use multiples of {step}, e.g. --widths 64,128,256."
        )


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


def _int_list(value: Any, where: str, minimum: int) -> list[int]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        out = [int(str(v).strip()) for v in items]
    except (TypeError, ValueError):
        raise CoordCheckError(
            f"{where}={value!r} is not a comma-separated list of integers. Fix: e.g. --widths 64,128,256,512."
        ) from None
    if any(v < minimum for v in out):
        raise CoordCheckError(f"{where}={value!r}: every entry must be >= {minimum}.")
    return out


def _seeds(value: Any, where: str) -> list[int]:
    """``3`` -> [0, 1, 2]; ``"0,5"`` or ``[0, 5]`` -> [0, 5]."""
    if isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value):
        return _int_list(value, where, minimum=0)
    n = _number(value, where, int)
    return list(range(n))
