"""Recipes: the YAML description of a tuning job, parsed into typed, documented dataclasses.

A recipe names the model, the task, the parametrization and optimizer, the schedule, the
batch size and steps, the proxy and target widths, the search space and the tuning settings.
:func:`load_recipe` reads YAML with ``yaml.safe_load`` only and validates everything at once:
a :class:`~hptransfer.errors.RecipeError` lists every problem with its field path and fix.

Extra top-level sections (the verification ``check:`` section, for one) plug in with
:func:`register_section`; they are parsed with the same helpers and stored in
``Recipe.sections``. ``python -m hptransfer.recipe --reference`` prints the reference page
generated from the field documentation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import redact_url
from ..errors import RecipeError
from ._runspec import RunSpec, RunTrainSpec
from ._sections import (
    DepthsSpec,
    ModelSpec,
    OptimizerSpec,
    ParametrizationSpec,
    ScheduleSpec,
    SearchParam,
    TaskSpec,
    TrainSpec,
    WidthsSpec,
)
from ._spec import Problems, _scalar, did_you_mean, parse_section, plain
from ._stages import CheckSpec, TransferSpec, TuneSpec
from ._validate import check_depths, check_section, cross_check, parse_search, transfer_section

__all__ = ["Recipe", "parse_recipe", "register_section", "objective_changes", "OBJECTIVE_FIELDS", "safe_name"]


_SECTIONS: dict[str, tuple[type, str]] = {
    "model": (ModelSpec, "The model factory."),
    "task": (TaskSpec, "The training task."),
    "parametrization": (ParametrizationSpec, "Width parametrization and default multipliers."),
    "optimizer": (OptimizerSpec, "Optimizer family and default hyperparameters."),
    "schedule": (ScheduleSpec, "LR schedule shape."),
    "train": (TrainSpec, "Batch size, steps and seeds."),
    "widths": (WidthsSpec, "Proxy and target widths."),
    "depths": (DepthsSpec, "Proxy and target depths (optional)."),
    "tune": (TuneSpec, "The Optuna study."),
    "transfer": (TransferSpec, "Target batch size/steps and the opt-in laws."),
    "check": (CheckSpec, "The transfer check (`hptransfer check`)."),
}
_REQUIRED = ("task", "train", "widths")
_TOP_LEVEL = ("name", "description", "out", "search", "fixed")
#: Sections a user's own ``train_fn`` decides when the recipe does not write them (and, for the
#: parametrization, names no model): its runs' specs hold ``None`` there, so nothing is recorded or
#: handed over that the user's code did not get.
_USER_DECIDES = ("parametrization", "optimizer", "schedule")

#: Extension sections: name -> (parser, doc, cross-check). See :func:`register_section`.
_EXTENSIONS: dict[str, tuple[Callable[[Any, str, Problems], Any], str, Callable[..., None] | None, type | None]] = {}


def register_section(
    name: str,
    spec: type | Callable[[Any, str, Problems], Any],
    *,
    doc: str = "",
    validate: Callable[[Recipe, Problems], None] | None = None,
) -> None:
    """Register an extra top-level recipe section (e.g. ``check``), parsed into ``Recipe.sections[name]``.

    Args:
        name: the top-level key.
        spec: a dataclass declared with :func:`hptransfer.recipe.spec_field` fields (parsed generically,
            with every problem collected), or a function ``(data, path, problems) -> value``.
        doc: one line for the reference page.
        validate: optional cross-check ``(recipe, problems) -> None`` run after the whole recipe parsed.
    """
    if name in _SECTIONS or name in _TOP_LEVEL:
        raise ValueError(f"recipe section {name!r} is built in and cannot be replaced")
    if dataclasses.is_dataclass(spec):
        cls = spec

        def parser(data: Any, path: str, problems: Problems) -> Any:
            return parse_section(cls, data, path, problems)
        _EXTENSIONS[name] = (parser, doc, validate, cls)
    else:
        _EXTENSIONS[name] = (spec, doc, validate, None)


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. Build with :func:`load_recipe` (file) or :func:`parse_recipe` (dict); change one
    with :func:`hptransfer.recipe.amend`, which validates it again (a Recipe is not changed in place)."""

    name: str
    task: TaskSpec
    train: TrainSpec
    widths: WidthsSpec
    model: ModelSpec = dataclasses.field(default_factory=ModelSpec)
    search: dict[str, SearchParam] = dataclasses.field(default_factory=dict)
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    parametrization: ParametrizationSpec = dataclasses.field(default_factory=ParametrizationSpec)
    optimizer: OptimizerSpec = dataclasses.field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = dataclasses.field(default_factory=ScheduleSpec)
    tune: TuneSpec = dataclasses.field(default_factory=TuneSpec)
    transfer: TransferSpec = dataclasses.field(default_factory=TransferSpec)
    check: CheckSpec = dataclasses.field(default_factory=CheckSpec)
    depths: DepthsSpec = dataclasses.field(default_factory=DepthsSpec)
    description: str = ""
    out: str | None = None
    sections: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str | None = None
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def base_width(self) -> int:
        """Base width of the parametrization (default: the first proxy width)."""
        return self.parametrization.base_width or self.widths.proxy[0]

    @property
    def study_name(self) -> str:
        return self.tune.study or self.name

    @property
    def user_decides(self) -> tuple[str, ...]:
        """The sections the user's own ``train_fn`` decides (not written in the recipe); empty for a
        built-in task, whose training reads every section. A recipe that names a model has its
        parametrization (the default μP where not written): hptransfer builds that model for transfer,
        ``load`` and the check, and hands the train_fn its name."""
        if self.task.train_fn is None:
            return ()
        return tuple(sec for sec in _USER_DECIDES if sec not in self.raw
                     and not (sec == "parametrization" and self.model.names_model))

    @property
    def run_dir(self) -> Path:
        """The run folder: ``out`` or ``runs/<name>`` (relative to the working directory)."""
        return Path(self.out or f"runs/{self.name}")

    def defaults(self) -> dict[str, Any]:
        """The value of every HP a run gets when it is not searched: the sections' tunable fields and
        ``fixed`` (for a ``train_fn`` recipe only those it hands over: see :meth:`values`)."""
        return self.values({})

    def values(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """The HP values a proxy run with the searched values ``sampled`` trains with
        (``self.at(proxy, sampled).values()``): what ``tune`` reports and ``transfer`` carries."""
        return self.at(self.widths.proxy[0], sampled).values()

    def at(
        self,
        width: int,
        values: dict[str, Any] | None = None,
        *,
        seed: int | None = None,
        parametrization: str | None = None,
        steps: int | None = None,
        batch_size: int | None = None,
        depth: int | None = None,
    ) -> RunSpec:
        """The run spec of this recipe at ``width`` with HP ``values`` (the searched ones; the rest
        keep the recipe's values).

        Args:
            width: model width of the run.
            values: HP values by name (``lr``, ``output_mult``, ... or a custom ``train_fn``'s own).
            seed: training seed. Default: the first of ``train.seeds``.
            parametrization: swap the parametrization (the check compares ``sp`` and ``mup``).
            steps, batch_size: override ``train.steps`` / ``train.batch_size`` (target runs, checks).
            depth: the run's depth. Default: ``depths.proxy`` (``None`` without a ``depths`` section: the
                factory's own depth); the target's is ``depths.target``.
        """
        p = self.parametrization
        depth = self.depths.proxy if depth is None else int(depth)
        base_depth = (p.base_depth or self.depths.proxy or depth) if depth is not None else None
        mine = self.user_decides
        spec = RunSpec(
            width=int(width), model=self.model, task=self.task, depth=depth,
            parametrization=None if "parametrization" in mine and parametrization is None else dataclasses.replace(
                p, name=parametrization or p.name, base_width=self.base_width, base_depth=base_depth),
            optimizer=None if "optimizer" in mine else self.optimizer,
            schedule=None if "schedule" in mine else self.schedule,
            train=RunTrainSpec(batch_size=batch_size or self.train.batch_size, steps=steps or self.train.steps,
                               divergence_factor=self.train.divergence_factor, eval_every=self.train.eval_every),
            seed=int(self.train.seeds[0] if seed is None else seed),
        )
        return spec.with_values({**self.fixed, **(values or {})})

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (defaults filled in), suitable for YAML and hashing.

        A database password in ``tune.storage`` is shown as ``***`` (:func:`hptransfer._io.redact_url`):
        this is what recipe.yaml and the study's stored recipe hold."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        mine = self.user_decides  # left out, as in the recipe: a reloaded recipe.yaml means the same
        for sec in _SECTIONS:
            if sec not in mine:
                out[sec] = plain(getattr(self, sec))
        out["search"] = {k: {f: v for f, v in plain(p).items() if v is not None} for k, p in self.search.items()}
        if self.fixed:
            out["fixed"] = plain(self.fixed)
        for name, value in self.sections.items():
            out[name] = plain(value)
        if out["tune"].get("storage"):  # recipe.yaml and the study's stored recipe are shared: no password
            out["tune"]["storage"] = redact_url(out["tune"]["storage"])
        if self.out is not None:
            out["out"] = self.out
        return out

    @property
    def hash(self) -> str:
        """sha256 (first 12 hex) of what defines the tuning objective: model, task, parametrization,
        optimizer, schedule, train, widths and search. Budget, storage, workers and transfer settings
        are left out, so raising ``tune.trials`` and resuming keeps the hash."""
        d = self.to_dict()
        keep = ("model", "task", "parametrization", "optimizer", "schedule", "train", "widths", "depths", "search",
                "fixed")
        d = {k: d[k] for k in keep if k in d}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


#: What a trial's loss depends on: a study's trials stand for its recipe only while these are unchanged.
#: (``train.eval_every`` only adds validation points; the search space and budget may change.)
OBJECTIVE_FIELDS = ("model", "task", "parametrization", "optimizer", "schedule", "train", "widths.proxy",
                    "depths.proxy", "fixed")
_NOT_OBJECTIVE = {"train.eval_every"}


def objective_changes(stored: dict[str, Any], recipe: Recipe) -> list[str]:
    """``"field: old -> new"`` for each field in :data:`OBJECTIVE_FIELDS` where ``recipe`` differs from
    ``stored`` (a recipe as :meth:`Recipe.to_dict` gave it). A field ``stored`` lacks (a recipe written
    by an older hptransfer) is not counted as a change."""
    now = recipe.to_dict()
    out: list[str] = []

    def walk(path: str, old: Any, new: Any) -> None:
        if path in _NOT_OBJECTIVE:
            return
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(old.keys() | new.keys(), key=str):
                if key in old:
                    walk(f"{path}.{key}", old[key], new.get(key))
        elif json.dumps(old, sort_keys=True, default=str) != json.dumps(new, sort_keys=True, default=str):
            out.append(f"{path}: {old!r} -> {new!r}")

    missing = object()
    for name in OBJECTIVE_FIELDS:
        section, _, key = name.partition(".")
        if section in recipe.user_decides:
            continue  # the user's train_fn decides it (a study of an older hptransfer stored its defaults)
        old, new = stored.get(section, missing), now.get(section)
        if key:
            old = old.get(key, missing) if isinstance(old, dict) else missing
            new = new.get(key) if isinstance(new, dict) else None
        if old is not missing:
            walk(name, old, new)
    return out


def parse_recipe(data: Any, source: str | None = None, default_name: str = "recipe") -> Recipe:
    """Validate a recipe given as a dict (as ``yaml.safe_load`` returns it).

    Raises:
        RecipeError: listing every problem as ``(field path, message with the fix)``.
    """
    problems: Problems = []
    if not isinstance(data, dict):
        raise RecipeError([("(top level)", f"a recipe is a mapping of sections, got {type(data).__name__}. "
                                           "Fix: start from recipes/mlp_quickstart.yaml.")], source)
    known = list(_SECTIONS) + list(_TOP_LEVEL) + list(_EXTENSIONS)
    for key in data:
        if key not in known:
            problems.append((str(key), f"unknown section.{did_you_mean(str(key), known)} Known sections: "
                                       f"{', '.join(known)}."))
    for key in _REQUIRED:
        if key not in data:
            problems.append((key, f"section is required. Fix: add a `{key}:` section (see docs/recipe_reference.md)."))
    parsed: dict[str, Any] = {}
    for sec, (cls, _) in _SECTIONS.items():
        if sec in data or sec not in _REQUIRED:
            parsed[sec] = parse_section(cls, data.get(sec), sec, problems)
    extra = {name: parser(data.get(name), name, problems)
             for name, (parser, _, _, _) in _EXTENSIONS.items() if name in data}
    search = parse_search(data["search"], problems) if data.get("search") is not None else {}
    fixed = _parse_fixed(data.get("fixed"), problems)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ \t"):
        problems.append(("name", f"must be a non-empty string without spaces or slashes, got {name!r}."))
        name = default_name
    for key in ("description", "out"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            problems.append((key, f"must be a string, got {type(data[key]).__name__}."))
    if problems or any(parsed.get(s) is None for s in _REQUIRED) or search is None:
        raise RecipeError(problems or [("(recipe)", "incomplete recipe")], source)
    recipe = Recipe(
        name=name, search=search, fixed=fixed, sections=extra, source=source, raw=data,
        description=data.get("description") or "", out=data.get("out"), **parsed,
    )
    cross_check(recipe, problems)
    check_depths(recipe, problems)
    check_section(recipe, problems)
    transfer_section(recipe, problems)
    for name_, (_, _, validate, _) in _EXTENSIONS.items():
        if validate is not None and name_ in extra and extra[name_] is not None:
            validate(recipe, problems)
    if problems:
        raise RecipeError(problems, source)
    return recipe


def safe_name(text: str) -> str:
    """``text`` as a recipe name (a folder name): characters other than letters, digits, ``.``, ``_`` and
    ``-`` become ``_`` (a study name may hold anything; the run folder ``runs/<name>`` may not)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(text)).strip("_") or "recipe"


def _parse_fixed(data: Any, problems: Problems) -> dict[str, Any]:
    """The ``fixed`` section: HP name -> a value (number, string or bool) given to every run."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(("fixed", f"must map hyperparameter names to values, e.g. `fixed: {{label_smoothing: 0.1}}`, "
                                  f"got {type(data).__name__}."))
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key:
            problems.append((f"fixed.{key}", "a hyperparameter name must be a non-empty string."))
        elif not isinstance(value := _scalar(value), (int, float, str, bool)):
            problems.append((f"fixed.{key}", f"must be a number, string or bool, got {type(value).__name__}."))
        else:
            out[key] = value
    return out
