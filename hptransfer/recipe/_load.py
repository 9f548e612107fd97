"""Reading recipes from YAML, and changing them: the strict loader, ``--set`` overrides, :func:`amend`.

Every change goes through :func:`parse_recipe` again, so an overridden or amended recipe is
validated exactly like one read from a file (every problem at once, with its field path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import RecipeError
from ._recipe import Recipe, parse_recipe
from ._sections import TUNABLE
from ._spec import Problems

__all__ = ["StrictLoader", "load_recipe", "apply_overrides", "amend"]


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (plain YAML keeps the last
    silently, so `steps: 100` followed later by `steps: 10` would train 10 steps), and reports an
    integer too long for Python (over 4300 digits) as a YAML problem instead of a traceback."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1}); keep one of them",
                    key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"number too long ({len(node.value)} characters)", node.start_mark) from None


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor("tag:yaml.org,2002:map", StrictLoader.construct_yaml_map)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read and validate a YAML recipe (``yaml.safe_load`` only).

    Args:
        path: the recipe file.
        overrides: ``"section.field=value"`` strings applied before validation (values are YAML).

    Raises:
        RecipeError: the file is missing or not YAML, or the recipe is invalid (every problem listed).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError([("(file)", f"cannot read {p}: {exc.strerror}. Fix: check the path.")], str(p)) from None
    except UnicodeDecodeError as exc:
        raise RecipeError([("(file)", f"{p} is not a text file (byte {exc.start} is not UTF-8). Fix: pass a YAML "
                                      "recipe, e.g. recipes/mlp_quickstart.yaml.")], str(p)) from None
    try:
        data = yaml.load(text, Loader=StrictLoader)  # SafeLoader, duplicate keys refused
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown position)"
        problem = getattr(exc, "problem", None) or "syntax error"
        raise RecipeError([(where, f"not valid YAML: {problem}. Fix: check indentation and quoting.")], str(p)) \
            from None
    if data is None:
        raise RecipeError([("(file)", "the recipe is empty. Fix: start from recipes/mlp_quickstart.yaml.")], str(p))
    if overrides:
        data = apply_overrides(data, overrides, source=str(p))
    return parse_recipe(data, source=str(p), default_name=p.stem)


def apply_overrides(data: Any, overrides: list[str], source: str | None = None) -> dict[str, Any]:
    """Return a copy of ``data`` with ``"a.b=value"`` overrides applied (value parsed as YAML)."""
    if not isinstance(data, dict):
        return data
    data = _merge({}, data)  # mappings copied, objects given from Python kept as they are
    problems: Problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append((item, "override must look like `section.field=value`, e.g. `train.steps=50`."))
            continue
        try:
            value = yaml.load(text, Loader=StrictLoader)
        except yaml.YAMLError:
            value = text
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    if problems:
        raise RecipeError(problems, source)
    return data


def amend(recipe: Recipe, *, data: dict[str, Any] | None = None, overrides: list[str] | None = None,
          fixed: dict[str, Any] | None = None) -> Recipe:
    """A copy of ``recipe`` with changes, validated again like a new recipe (every problem at once).

    Args:
        data: nested fields to set, e.g. ``{"model": {"factory": my_factory}, "train": {"steps": 50}}``
            (in-memory objects allowed where a field takes them).
        overrides: ``"section.field=value"`` strings (values are YAML), as ``--set`` takes them.
        fixed: HP values held in every run: a built-in HP goes to the section field that holds it
            (``lr`` -> ``optimizer.lr``) unless the recipe leaves that section to its ``train_fn``;
            any other name goes to ``fixed``. A name that is also searched is refused.

    Raises:
        RecipeError: listing every problem with its field path.
    """
    raw = _merge({}, recipe.raw)
    raw.setdefault("name", recipe.name)
    if recipe.out is not None:
        raw["out"] = recipe.out  # the run folder as the recipe has it now (the CLI's --out sets it)
    if data:
        raw = _merge(raw, data)
    if overrides:
        raw = apply_overrides(raw, overrides, source=recipe.source)
    searched = [k for k in (fixed or {}) if k in recipe.search]
    if searched:
        raise RecipeError([(f"fixed.{k}", f"{k!r} is also searched (search.{k}): every trial would train with the "
                                          "fixed value while the study records a searched one. Fix: drop it from "
                                          "fixed, or from the search space.") for k in searched], recipe.source)
    raw = _merge(raw, {"fixed": dict(fixed or {})}) if fixed else raw
    # A built-in HP goes to the section that holds it, once the recipe writes that section (also a
    # section written only now, as transfer's factory= writes the parametrization): what trained the
    # proxy is what the target gets.
    held = {hp: v for hp, v in (raw.get("fixed") or {}).items() if hp in TUNABLE and _holds(raw, TUNABLE[hp][0])}
    if held:
        raw["fixed"] = {k: v for k, v in raw["fixed"].items() if k not in held}
        for hp, value in held.items():
            sec, fld = TUNABLE[hp][:2]
            raw = _merge(raw, {sec: {fld: value}})
    return parse_recipe(raw, source=recipe.source, default_name=recipe.name)


def _holds(raw: dict[str, Any], section: str) -> bool:
    """Whether the recipe ``raw`` describes has ``section`` (:attr:`Recipe.user_decides`, read on the data)."""
    task, model = raw.get("task") or {}, raw.get("model") or {}
    if not isinstance(task, dict) or task.get("train_fn") is None or section in raw:
        return True
    return section == "parametrization" and isinstance(model, dict) and \
        any(model.get(k) is not None for k in ("name", "factory", "hf"))


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in, copying the mappings on the way (not the objects they hold:
    a factory or a task given from Python stays the same object)."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = _merge({}, value) if isinstance(value, dict) else value
    return out
