"""JSON Schema of recipes, generated from the same field metadata that validates them.

Editors with a YAML language server complete and check recipe fields from it: write the schema
with ``hptransfer schema > recipe.schema.json`` and start a recipe with
``# yaml-language-server: $schema=recipe.schema.json``. The reference page
(``docs/recipe_reference.md``) is generated from the same metadata, so the three cannot drift.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._version import __version__
from ._sections import SearchParam

__all__ = ["json_schema", "section_schema", "DRAFT"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _field_schema(meta: dict[str, Any], default: Any) -> dict[str, Any]:
    kind = meta["kind"]
    out: dict[str, Any]
    if kind == "section":
        out = section_schema(meta["section"])
    elif kind == "int":
        out = {"type": "integer"}
    elif kind == "float":
        out = {"type": "number"}
    elif kind == "bool":
        out = {"type": "boolean"}
    elif kind == "str":
        out = {"type": "string", "minLength": 1}
    elif kind == "choice":
        out = {"type": "string", "enum": list(meta["choices"])}
    elif kind in ("ints", "floats"):
        item = {"type": "integer" if kind == "ints" else "number"}
        _bounds(item, meta)
        out = {"oneOf": [item, {"type": "array", "items": item, "minItems": 1}]}
    elif kind == "strs":
        out = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    elif kind == "mapping":
        out = {"type": "object"}
    else:  # any
        out = {}
    if kind in ("int", "float"):
        _bounds(out, meta)
    if meta.get("auto"):
        out = {"anyOf": [out, {"const": "auto"}]}
    if meta.get("objects"):  # an object given from Python is written as `module:qualname` (recipe.object_path)
        out = {"anyOf": [out, {"type": "string", "pattern": ":"}]}
    out["description"] = meta["doc"]
    if default is not dataclasses.MISSING and kind != "section":
        out["default"] = list(default) if isinstance(default, tuple) else default
    if meta.get("optional"):
        out = {"anyOf": [out, {"type": "null"}], "description": meta["doc"]}
    return out


def _bounds(out: dict[str, Any], meta: dict[str, Any]) -> None:
    if meta.get("minimum") is not None:
        out["exclusiveMinimum" if meta.get("exclusive_min") else "minimum"] = meta["minimum"]
    if meta.get("maximum") is not None:
        out["maximum"] = meta["maximum"]


def section_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of one spec dataclass (fields declared with ``spec_field``)."""
    props: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("kind"):
            continue
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = dataclasses.MISSING if meta["kind"] == "section" else f.default_factory()
        props[f.name] = _field_schema(dict(meta), default)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    out: dict[str, Any] = {"type": "object", "description": (cls.__doc__ or "").strip(), "properties": props,
                           "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a recipe file."""
    from ._recipe import _REQUIRED, _SECTIONS  # the section table lives with the parser

    props: dict[str, Any] = {
        "name": {"type": "string", "pattern": r"^[^/\\ \t]+$", "description": "Run name (default: the file name)."},
        "description": {"type": "string", "description": "Free text."},
        "out": {"type": "string", "description": "Run folder (default `runs/<name>`)."},
        "search": {"type": "object", "additionalProperties": section_schema(SearchParam),
                   "description": "One entry per hyperparameter to search (`tune` needs at least one)."},
        "fixed": {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean"]},
                  "description": "Values given to every run and not searched: the hyperparameters of your own "
                                 "`train_fn`, and built-in ones whose section the recipe leaves to it."},
    }
    for key, (cls, doc) in _SECTIONS.items():
        props[key] = {**section_schema(cls), "description": doc}
    return {
        "$schema": DRAFT,
        "$id": f"https://hptransfer.invalid/recipe-{__version__}.schema.json",
        "title": "hptransfer recipe",
        "type": "object",
        "properties": props,
        "required": list(_REQUIRED),
        "additionalProperties": False,
    }
