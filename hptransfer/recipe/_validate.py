"""Recipe validation beyond single fields: the search space, cross-field checks, the check section.

Every problem is appended as ``(field path, message with the fix)``; nothing raises here, so
:func:`hptransfer.recipe.parse_recipe` can report all of them at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import RecipeError
from ._sections import EXPECTATIONS, SWEEPABLE, TUNABLE, SearchParam
from ._spec import Problems, did_you_mean, import_object, parse_section
from ._stages import GridSpec

if TYPE_CHECKING:
    from ._recipe import Recipe

__all__ = ["parse_search", "cross_check", "check_section", "transfer_section", "check_depths"]


def parse_search(data: Any, problems: Problems) -> dict[str, SearchParam] | None:
    """The ``search`` section: one :class:`SearchParam` per HP; problems are appended, not raised."""
    if not isinstance(data, dict) or not data:
        problems.append(("search", "must map each hyperparameter name to its range, e.g. "
                                   "`lr: {type: log_float, low: 1.0e-4, high: 1.0e-1}`."))
        return None
    out: dict[str, SearchParam] = {}
    for name, spec in data.items():
        path = f"search.{name}"
        n_before = len(problems)
        param = parse_section(SearchParam, spec, path, problems)
        if param is None or len(problems) > n_before:
            continue
        if param.type == "categorical":
            if not isinstance(param.choices, list) or not param.choices:
                problems.append((f"{path}.choices", "categorical needs a non-empty list `choices: [a, b]`."))
                continue
            if param.low is not None or param.high is not None:
                problems.append((path, "categorical takes `choices`, not `low`/`high`."))
                continue
        else:
            if param.low is None or param.high is None:
                problems.append((path, f"{param.type} needs `low` and `high`."))
                continue
            if param.low >= param.high:
                problems.append((path, f"low ({param.low:g}) must be below high ({param.high:g}). Fix: swap them."))
                continue
            if param.type == "log_float" and param.low <= 0:
                problems.append((f"{path}.low", f"log_float needs low > 0, got {param.low:g}."))
                continue
            if param.type == "log_float" and param.step is not None:
                problems.append((f"{path}.step", "log_float does not take a step. Fix: remove `step`."))
                continue
            if param.type == "int" and not (float(param.low).is_integer() and float(param.high).is_integer()):
                problems.append((path, "int needs integer `low` and `high`."))
                continue
            if param.choices is not None:
                problems.append((f"{path}.choices", f"{param.type} takes `low`/`high`, not `choices`."))
                continue
        out[str(name)] = param
    return out


def cross_check(r: Recipe, problems: Problems) -> None:
    m, t = r.model, r.task
    named = [m.name, m.factory, m.hf].count(None)
    if named < 2 or (named == 3 and t.train_fn is None):
        problems.append(("model", "give exactly one of `name` (built-in), `factory` (import path) or `hf` "
                                  "(a Hugging Face architecture)."))
    elif isinstance(m.factory, str):
        _check_import(m.factory, "model.factory", problems)
    if (t.name is None) == (t.train_fn is None):
        problems.append(("task", "give exactly one of `name` (built-in) or `train_fn` (import path)."))
    elif isinstance(t.train_fn, str):
        _check_import(t.train_fn, "task.train_fn", problems)
    elif isinstance(t.name, str):
        from ..zoo.tasks import get_task

        try:
            get_task(t.name, **t.kwargs)
        except Exception as exc:  # DataError or a bad value type; report as a recipe problem
            problems.append(("task.kwargs", f"{exc}"))
    if t.train_fn is None:
        for fld in ("batch_size", "steps"):
            if getattr(r.train, fld) is None:
                problems.append((f"train.{fld}", f"is required for a built-in task. Fix: add `{fld}:` under `train:`."))
    from ..parametrization import available_parametrizations

    names = list(available_parametrizations())
    pname = r.parametrization.name
    if isinstance(pname, str) and pname not in names:
        problems.append(("parametrization.name",
                         f"{pname!r} is not registered.{did_you_mean(pname, names)} Known: {', '.join(names)}."))
    proxy, target = r.widths.proxy, r.widths.target
    if target is not None and max(proxy) > min(target):
        problems.append(("widths", f"proxy widths {list(proxy)} must not exceed target widths {list(target)}. "
                                   "Fix: tune the small model, transfer to the large one."))
    _check_fixed(r, problems)
    if t.train_fn is None:
        for hp in r.search:
            if hp not in TUNABLE:
                problems.append((f"search.{hp}", f"the built-in training does not use {hp!r}."
                                                 f"{did_you_mean(hp, list(TUNABLE))} Tunable: {', '.join(TUNABLE)} "
                                                 "(or use your own task.train_fn)."))
    for hp, p in r.search.items():
        if hp in TUNABLE and p.type != "categorical" and p.low is not None and p.high is not None:
            _, _, lo, hi, excl = TUNABLE[hp]
            if (p.low <= lo if excl else p.low < lo) or p.high > hi:
                rng = f"{'(' if excl else '['}{lo:g}, {hi:g}]"
                problems.append((f"search.{hp}", f"range [{p.low:g}, {p.high:g}] leaves the legal range {rng} "
                                                 f"of {hp}. Fix: narrow it."))
    if r.tune.sampler == "gp" and any(p.type == "categorical" for p in r.search.values()):
        problems.append(("tune.sampler", "`gp` handles numeric spaces best; this space has a categorical HP. "
                                         "Fix: use `sampler: tpe`."))
    if r.tune.storage and r.tune.storage.startswith("sqlite") and r.tune.workers > 1:
        problems.append(("tune.storage", "SQLite fails with several worker processes. Fix: drop `storage` "
                                         "(journal file default) or use postgresql://."))


def _check_fixed(r: Recipe, problems: Problems) -> None:
    """``fixed``: not also searched; a built-in HP only where no section of the recipe holds it."""
    mine = r.user_decides
    for hp in r.fixed:
        path = f"fixed.{hp}"
        if hp in r.search:
            problems.append((path, f"{hp!r} is also searched (search.{hp}): a run cannot train with both. Fix: "
                                   "drop it from `fixed` or from `search`."))
        elif hp in TUNABLE and TUNABLE[hp][0] not in mine:
            sec, fld = TUNABLE[hp][:2]
            problems.append((path, f"{hp!r} is held by the recipe's `{sec}` section. Fix: set `{sec}.{fld}` "
                                   "instead."))
        elif hp not in TUNABLE and r.task.train_fn is None:
            problems.append((path, f"the built-in training does not use {hp!r}.{did_you_mean(hp, list(TUNABLE))} "
                                   "Fix: drop it, or use your own task.train_fn."))


def transfer_section(r: Recipe, problems: Problems) -> None:
    """The drift fit's widths and seeds (only checked when ``transfer.drift: fit``)."""
    t = r.transfer
    if t.drift != "fit" or r.widths.target is None:
        return
    proxy, target = max(r.widths.proxy), min(r.widths.target)
    extra = sorted(set(t.fit_widths or (2 * proxy, 4 * proxy)) - {proxy})
    if len(extra) < 2:
        problems.append(("transfer.fit_widths", f"the drift fit needs 2 widths besides the proxy ({proxy}) for a "
                                                f"slope with an interval, got {extra}. Fix: e.g. [{2 * proxy}, "
                                                f"{4 * proxy}]."))
    bad = [w for w in extra if not proxy < w < target]
    if bad:
        problems.append(("transfer.fit_widths", f"{bad} must lie between the proxy width {proxy} and the target "
                                                f"width {target} (the fit is meant to be cheap). Fix: e.g. "
                                                f"[{2 * proxy}, {4 * proxy}], or a larger target."))
    if len(set(t.fit_seeds)) < 2:
        problems.append(("transfer.fit_seeds", f"needs at least 2 distinct seeds, got {list(t.fit_seeds)}."))
def check_depths(r: Recipe, problems: Problems) -> None:
    """The depth axis: both depths or neither, proxy not deeper than the target, a depth-scaled
    parametrization only with depths, and the depth argument not also fixed in `model.kwargs`."""
    from ..parametrization import get_parametrization

    d = r.depths
    if (d.proxy is None) != (d.target is None):
        problems.append(("depths", "give both `proxy` and `target` (or leave the section out)."))
        return
    if d.proxy is not None and d.target is not None and d.proxy > d.target:
        problems.append(("depths", f"proxy depth {d.proxy} must not exceed target depth {d.target}. Fix: tune the "
                                   "shallow model, transfer to the deep one."))
    name = r.parametrization.name
    try:
        scaled = get_parametrization(name).depth_alpha is not None
    except Exception:  # an unknown name is reported by cross_check
        return
    if scaled and d.proxy is None:
        problems.append(("depths", f"parametrization {name!r} scales along depth and needs the depths. Fix: add "
                                   "`depths: {proxy: 2, target: 8}`, or use `mup` (width only)."))
    if d.proxy is None and r.parametrization.base_depth is not None:
        problems.append(("parametrization.base_depth", "is set without a `depths` section. Fix: add `depths:`."))
    arg = r.model.depth_argument
    if d.proxy is not None and arg in r.model.kwargs:
        problems.append((f"model.kwargs.{arg}", f"fixes the depth argument that `depths` sets per run. Fix: drop "
                                                f"`{arg}` from model.kwargs."))


def check_section(r: Recipe, problems: Problems) -> None:
    spec = r.check
    if spec.widths is not None and len(set(spec.widths)) < 3:
        problems.append(("check.widths", f"needs at least 3 distinct widths, got {list(spec.widths)}."))
    if spec.depths is not None and len(set(spec.depths)) < 3:
        problems.append(("check.depths", f"needs at least 3 distinct depths, got {list(spec.depths)}."))
    if len(set(spec.seeds)) < 2:
        problems.append(("check.seeds", f"needs at least 2 distinct seeds, got {list(spec.seeds)}. Fix: [0, 1, 2]."))
    for hp in SWEEPABLE:
        g: GridSpec | None = getattr(spec, hp)
        if g is None:
            continue
        if g.values is not None:
            vals = list(g.values)
            if len(vals) < 3 or vals != sorted(set(vals)):
                problems.append((f"check.{hp}.values", f"needs 3 or more increasing values, got {vals}."))
        elif g.low is None or g.high is None:
            problems.append((f"check.{hp}", "give `low` and `high` (or `values`)."))
        elif g.low >= g.high:
            problems.append((f"check.{hp}", f"low ({g.low:g}) must be below high ({g.high:g})."))
    if "check" in r.raw and spec.lr is None and not (r.search.get("lr") and r.search["lr"].low):
        problems.append(("check.lr", "no LR grid: the recipe searches no `lr` range. Fix: add "
                                     "`check: {lr: {low: 1.0e-4, high: 1.0e-1}}`."))
    for p, e in spec.expect.items():
        if e not in EXPECTATIONS:
            problems.append((f"check.expect.{p}", f"{e!r} is not one of {', '.join(EXPECTATIONS)}."))


def _check_import(spec: Any, path: str, problems: Problems) -> None:
    try:
        import_object(spec, path)
    except RecipeError as exc:
        problems.extend(exc.problems)
