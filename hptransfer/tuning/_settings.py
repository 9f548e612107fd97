"""The recipe :func:`hptransfer.tune` runs: a recipe as given, or the one its Python form stands for.

``tune(train_fn, space=..., width=...)`` is a thin adapter: it writes the recipe that the same job
has as a YAML file (``task.train_fn`` is the function itself) and tunes that, so both doors share
one implementation, one set of defaults and the same guards (a study named after the problem, a
rerun with other settings refused, known breakers named).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..diagnostics import diagnose
from ..errors import RecipeError, TuneError, warn
from ..recipe import Recipe, SearchParam, amend, load_recipe, parse_recipe
from ..recipe._recipe import safe_name
from ..recipe._validate import parse_search
from ..training._preflight import preflight

__all__ = ["Settings", "settings", "as_recipe", "recipe_from_train_fn", "tune_recipe", "parse_space", "space_data"]


def space_data(space: dict[str, Any]) -> dict[str, Any]:
    """A Python search space as the recipe's ``search`` mapping.

    Accepts recipe-style mappings (``{"lr": {"type": "log_float", "low": 1e-4, "high": 1e-1}}``),
    tuples ``("log_float", low, high)`` / ``("int", low, high)``, and lists (categorical choices).
    """
    data: dict[str, Any] = {}
    for k, v in (space or {}).items():
        if isinstance(v, tuple) and len(v) == 3:
            data[k] = {"type": v[0], "low": v[1], "high": v[2]}
        elif isinstance(v, list):
            data[k] = {"type": "categorical", "choices": v}
        else:
            data[k] = v
    return data


def parse_space(space: dict[str, Any]) -> dict[str, SearchParam]:
    """A Python search space (see :func:`space_data`) -> :class:`SearchParam` per HP."""
    problems: list[tuple[str, str]] = []
    out = parse_search(space_data(space), problems)
    if problems or out is None:
        raise RecipeError(problems or [("space", "empty search space")], "tune(space=...)")
    return out


@dataclass
class Settings:
    """The recipe :func:`tune` runs, checked, and the known breakers of transfer found in it."""

    recipe: Recipe
    diagnostics: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.recipe.study_name


def default_study_name(fn: Callable[..., Any]) -> str:
    """A study name that says which function it tunes: ``<module>.<function>`` (the script's file
    name for ``__main__``), so that two scripts' studies never share a name or a run folder."""
    module = getattr(fn, "__module__", None) or "fn"
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        module = Path(main_file).stem if main_file else "main"
    return safe_name(f"{module.rsplit('.', 1)[-1]}.{getattr(fn, '__qualname__', type(fn).__name__)}")


def recipe_from_train_fn(fn: Callable[..., float], *, space: dict[str, Any] | None, width: Any, steps: int,
                         batch_size: int | None, seeds: Sequence[int], study_name: str | None) -> Recipe:
    """The recipe that ``tune(fn, space=..., width=..., steps=..., seeds=...)`` stands for: ``fn`` as
    ``task.train_fn``, no model, and no optimizer, schedule or parametrization section (``fn`` decides
    them, so none is recorded or handed over)."""
    if space is None or width is None:
        raise TuneError("tune(train_fn, ...) needs space= and width=. Fix: e.g. tune(fn, "
                        "space={'lr': ('log_float', 1e-4, 1e-1)}, width=64, trials=30).")
    data: dict[str, Any] = {
        "name": safe_name(study_name) if study_name else default_study_name(fn),
        "task": {"train_fn": fn},
        "train": {"steps": steps or None, "batch_size": batch_size, "seeds": list(_ints("seeds", seeds))},
        "widths": {"proxy": list(_ints("width", width))},
        "search": space_data(space),
    }
    if study_name and safe_name(study_name) != study_name:
        data["tune"] = {"study": study_name}  # the study keeps its name; the run folder a safe form of it
    return parse_recipe(data, source="tune(train_fn, ...)")


def tune_recipe(recipe: Recipe | str | Path | dict | Callable[..., float], *, space: dict[str, Any] | None,
                width: Any, steps: int, batch_size: int | None, seeds: Sequence[int], overrides: list[str] | None,
                fixed: dict[str, Any] | None, out: str | Path | None, study: dict[str, Any]) -> Recipe:
    """The recipe a call of :func:`hptransfer.tune` runs: the recipe given (or the one a ``train_fn``
    stands for), with ``overrides``, ``fixed`` values, ``out`` and the ``tune`` fields in ``study`` (those
    not ``None``) written in, so that what is stored and written (recipe.yaml, the study) is what ran."""
    if callable(recipe) and not isinstance(recipe, (Recipe, str, Path, dict)):
        rec = recipe_from_train_fn(recipe, space=space, width=width, steps=steps, batch_size=batch_size,
                                   seeds=seeds, study_name=study.get("study"))
        study = {**study, "study": None}  # the function form names its recipe (and so its study) after it
        rec = amend(rec, overrides=overrides) if overrides else rec
    else:
        rec = as_recipe(recipe, overrides)
    changes: dict[str, Any] = {"tune": {k: v for k, v in study.items() if v is not None}}
    if out is not None:
        changes["out"] = str(out)
    return amend(rec, data=changes, fixed=fixed)


def settings(rec: Recipe) -> Settings:
    """Check ``rec`` before a study exists (bad input fails here, not inside a trial) and name the
    known breakers of transfer it holds."""
    if not rec.search:
        raise TuneError(f"recipe {rec.name!r} searches nothing (no `search` section). Fix: add e.g. `search: {{lr: "
                        "{type: log_float, low: 1.0e-4, high: 1.0e-1}}`.")
    preflight(rec)
    found = diagnose(rec)
    for d in found:
        warn(f"known breaker of μTransfer: {d}", key=d.key)
    return Settings(rec, [str(d) for d in found])


def as_recipe(recipe: Recipe | str | Path | dict, overrides: list[str] | None) -> Recipe:
    """A recipe from a path, a dict or a :class:`Recipe`, with ``--set``-style overrides applied."""
    if isinstance(recipe, Recipe):
        return amend(recipe, overrides=overrides) if overrides else recipe
    if isinstance(recipe, dict):
        from ..recipe._load import apply_overrides

        return parse_recipe(apply_overrides(recipe, overrides or []), source="(dict)")
    return load_recipe(recipe, overrides)


def _ints(name: str, value: int | Sequence[int]) -> tuple[int, ...]:
    items = (value,) if isinstance(value, int) else tuple(value)
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        raise TuneError(f"tune({name}={value!r}): give an integer or a list of integers.")
    return items
