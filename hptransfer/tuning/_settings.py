"""What :func:`hptransfer.tune` resolves its two forms to: a recipe, or a training function and a space."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..diagnostics import diagnose
from ..errors import HPTransferWarning, RecipeError, TuneError
from ..recipe import Recipe, SearchParam, TuneSpec, apply_overrides, load_recipe, parse_recipe, parse_search
from ..training import preflight
from ._objective import Objective

__all__ = ["Settings", "settings_from_fn", "settings_from_recipe", "as_recipe", "parse_space"]


def parse_space(space: dict[str, Any]) -> dict[str, SearchParam]:
    """A Python search space -> :class:`SearchParam` per HP.

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
    problems: list[tuple[str, str]] = []
    out = parse_search(data, problems)
    if problems or out is None:
        raise RecipeError(problems or [("space", "empty search space")], "tune(space=...)")
    return out


@dataclass
class Settings:
    """What the two forms of :func:`tune` resolve to before the study starts."""

    name: str
    objective: Objective
    run_dir: Path
    storage: str | None
    defaults: TuneSpec  # trials, sampler, pruner, seeds, workers when not given to tune()
    recipe: Recipe | None = None
    diagnostics: list[str] = field(default_factory=list)  # known breakers of transfer found in the recipe


def settings_from_fn(fn: Callable[..., float], *, space: dict[str, Any] | None, width: Any, steps: int,
                      seeds: Sequence[int], fixed: dict[str, Any] | None, penalty: float | None,
                      study_name: str | None, out: str | Path | None, storage: str | None) -> Settings:
    if space is None or width is None:
        raise TuneError("tune(train_fn, ...) needs space= and width=. Fix: e.g. tune(fn, "
                        "space={'lr': ('log_float', 1e-4, 1e-1)}, width=64, trials=30).")
    name = study_name or "tune"
    objective = Objective(space=parse_space(space), widths=_ints("width", width), seeds=_ints("seeds", seeds),
                          steps=steps, train_fn=fn, fixed=dict(fixed or {}), penalty=penalty,
                          report_every=max(1, steps // 20) if steps else 0)
    # The function form has no recipe: its defaults are the recipe's tune-section defaults.
    return Settings(name, objective, Path(out or f"runs/{name}"), storage, TuneSpec())


def settings_from_recipe(rec: Recipe, *, fixed: dict[str, Any] | None, penalty: float | None, pruner: str | None,
                          study_name: str | None, out: str | Path | None, storage: str | None) -> Settings:
    t = rec.tune
    every = t.report_every or max(1, rec.train.steps // 20)
    objective = Objective(space=rec.search, widths=rec.widths.proxy, seeds=rec.train.seeds, steps=rec.train.steps,
                          recipe=rec, fixed=dict(fixed or {}), penalty=penalty,
                          report_every=every if (pruner or t.pruner) != "none" else 0,
                          divergence_factor=rec.train.divergence_factor)
    run_dir = Path(out) if out is not None else rec.run_dir
    preflight(rec)  # bad input fails here, before a study exists, not inside a trial or after tuning
    found = [str(d) for d in diagnose(rec)]
    for d in found:
        warnings.warn(f"known breaker of μTransfer: {d}", HPTransferWarning, stacklevel=4)
    return Settings(study_name or rec.study_name, objective, run_dir, storage or t.storage, t, rec, found)


def as_recipe(recipe: Recipe | str | Path | dict, overrides: list[str] | None) -> Recipe:
    if isinstance(recipe, Recipe):
        if overrides:
            raise TuneError("overrides apply to a recipe file or dict. Fix: pass the path instead.")
        return recipe
    if isinstance(recipe, dict):
        return parse_recipe(apply_overrides(recipe, overrides or []), source="(dict)")
    return load_recipe(recipe, overrides)


def _ints(name: str, value: int | Sequence[int]) -> tuple[int, ...]:
    items = (value,) if isinstance(value, int) else tuple(value)
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        raise TuneError(f"tune({name}={value!r}): give an integer or a list of integers.")
    return items
