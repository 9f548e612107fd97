"""``target.yaml``: a run spec written by the spec schema, plus what it implies and where it came from.

Layout (schema version :data:`TARGET_SCHEMA`)::

    hptransfer_target: 2          # the schema version of this file
    spec: {...}                   # the RunSpec, field for field (hptransfer.recipe._runspec.spec_to_dict)
    groups: [...]                 # the optimizer groups it gives (per-group LR and weight decay)
    base_shapes: {...}            # parameter -> base shape, to catch a different architecture
    transfer: {...}               # law, citation, warnings, the proxy's own values
    provenance: {...}             # study, trial, proxy loss, recipe hash, version, time

:func:`read_target` parses the spec back through the same schema, so that
``read_target(write_target(t)).spec == t.spec``. Files of schema 1 (hptransfer 0.1.0 before the
redesign, no ``hptransfer_target`` key) are refused with the command that rewrites them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._io import write_text_atomic
from ..errors import RecipeError, TransferError
from ..recipe import RunSpec
from ..recipe._runspec import spec_from_dict, spec_to_dict

__all__ = ["TargetFile", "TARGET_SCHEMA", "write_target", "read_target", "target_schema"]

#: Version of the target.yaml layout; bumped when the layout changes incompatibly.
TARGET_SCHEMA = 2

_HEADER = ("# Written by hptransfer.transfer. Rebuild in training code:\n"
           "#   model, opt = hptransfer.load(\"<this file>\")\n")


@dataclass
class TargetFile:
    """The content of one ``target.yaml``."""

    spec: RunSpec
    groups: list[dict[str, Any]] = field(default_factory=list)
    base_shapes: dict[str, list[int]] = field(default_factory=dict)
    transfer: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"hptransfer_target": TARGET_SCHEMA, "spec": spec_to_dict(self.spec), "groups": self.groups,
                "base_shapes": self.base_shapes, "transfer": self.transfer, "provenance": self.provenance}


def target_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``target.yaml``: the run spec's fields, as for recipes
    (:func:`hptransfer.recipe.json_schema`), and the shapes of what comes with it."""
    from ..recipe._schema import DRAFT, section_schema

    positive, number = {"type": "number", "exclusiveMinimum": 0}, {"type": "number", "minimum": 0}
    group = {"type": "object", "required": ["params", "lr", "weight_decay", "lr_mult"], "additionalProperties": False,
             "properties": {"params": {"type": "array", "items": {"type": "string"}}, "lr": positive,
                            "weight_decay": number, "lr_mult": positive}}
    return {
        "$schema": DRAFT, "title": "hptransfer target.yaml", "type": "object",
        "required": ["hptransfer_target", "spec", "groups", "base_shapes", "transfer", "provenance"],
        "additionalProperties": False,
        "properties": {
            "hptransfer_target": {"const": TARGET_SCHEMA, "description": "Schema version of this file."},
            "spec": {**section_schema(RunSpec), "description": "The run spec at the target width."},
            "groups": {"type": "array", "items": group,
                       "description": "Optimizer groups the spec gives (empty when it names no optimizer)."},
            "base_shapes": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}},
                            "description": "Parameter name -> base shape."},
            "transfer": {"type": "object", "required": ["law", "warnings", "proxy_values"],
                         "properties": {"law": {"enum": ["none", "step_law", "deepseek"]},
                                        "citation": {"type": ["string", "null"]},
                                        "warnings": {"type": "array", "items": {"type": "string"}},
                                        "proxy_values": {"type": "object"}, "drift": {"type": "object"}},
                         "additionalProperties": False},
            "provenance": {"type": "object", "required": ["study", "trial", "recipe_hash", "hptransfer_version"],
                           "properties": {"study": {"type": ["string", "null"]}, "trial": {"type": ["integer", "null"]},
                                          "recipe_hash": {"type": "string"},
                                          "hptransfer_version": {"type": "string"}}},
        },
    }


def write_target(path: str | Path, target: TargetFile) -> Path:
    """Write ``target`` atomically (a reader never sees half a file) and return the path."""
    p = Path(path)
    write_text_atomic(p, _HEADER + yaml.safe_dump(target.to_dict(), sort_keys=False, width=100))
    return p


def read_target(path: str | Path) -> TargetFile:
    """Read a ``target.yaml`` through the schema.

    Raises:
        TransferError: unreadable, not a target file, or written by another schema version
            (with the command that writes a current one).
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TransferError(f"cannot read target file {p}: {exc}. Fix: pass the target.yaml that "
                            "`hptransfer transfer` wrote.") from None
    if not isinstance(data, dict):
        raise TransferError(f"{p} is not a target file (expected a mapping with `hptransfer_target` and `spec`).")
    version = data.get("hptransfer_target")
    if version is None:
        old = (data.get("provenance") or {}).get("hptransfer_version") if isinstance(data.get("provenance"), dict) \
            else None
        if old is not None or {"width", "values", "parametrization", "optimizer"} <= set(data):
            raise TransferError(f"{p} was written by hptransfer {old or '0.1.0'} (target schema 1); this version reads "
                                f"schema {TARGET_SCHEMA}. Fix: rerun `hptransfer transfer RECIPE` (the study is kept, "
                                "nothing is retrained).")
        raise TransferError(f"{p} is not a target file (no `hptransfer_target` version key).")
    if version != TARGET_SCHEMA:
        raise TransferError(f"{p} has target schema {version!r}; this hptransfer reads schema {TARGET_SCHEMA}. Fix: "
                            "rerun `hptransfer transfer RECIPE` with this version.")
    try:
        spec = spec_from_dict(data.get("spec"), source=str(p))
    except RecipeError as exc:
        raise TransferError(f"{p}: the run spec is invalid:\n{exc}") from None
    schema = target_schema()
    problems = _problems({k: v for k, v in data.items() if k != "spec"},
                         {**schema, "properties": {k: v for k, v in schema["properties"].items() if k != "spec"},
                          "required": [k for k in schema["required"] if k != "spec"]}, "")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TransferError(f"{p}: {problems[0]}{more}. Fix: rerun `hptransfer transfer RECIPE` to write the file "
                            "again (the study is kept, nothing is retrained), or correct that field.")
    return TargetFile(spec=spec, groups=list(data.get("groups") or []), base_shapes=dict(data.get("base_shapes") or {}),
                      transfer=dict(data.get("transfer") or {}), provenance=dict(data.get("provenance") or {}))


_TYPES: dict[str, tuple[str, Any]] = {
    "object": ("a mapping", dict), "array": ("a list", list), "string": ("a string", str),
    "number": ("a number", (int, float)), "integer": ("an integer", int), "null": ("null", type(None)),
}


def _kind(value: Any) -> str:
    for name, (_, cls) in _TYPES.items():
        if isinstance(value, cls) and not isinstance(value, bool):
            return name if name != "number" or isinstance(value, float) else "integer"
    return "a boolean" if isinstance(value, bool) else type(value).__name__


def _problems(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """What in ``value`` breaks ``schema`` (the subset of JSON Schema :func:`target_schema` uses), one
    line each, naming the field path (``groups[0].lr``)."""
    where = path or "the file"
    if "const" in schema and value != schema["const"]:
        return [f"{where} is {value!r} (expected {schema['const']!r})"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where} is {value!r} (expected one of {', '.join(map(str, schema['enum']))})"]
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        ok = [t for t in allowed if isinstance(value, _TYPES[t][1]) and not isinstance(value, bool)
              and not (t == "integer" and isinstance(value, float))]
        if not ok:
            shown = {"object": "a mapping", "array": "a list"}.get(_kind(value), repr(value))
            return [f"{where} is {shown} (expected {' or '.join(_TYPES[t][0] for t in allowed)})"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            return [f"{where} is {value!r} (expected a finite number)"]
        if "minimum" in schema and value < schema["minimum"]:
            return [f"{where} is {value!r} (expected >= {schema['minimum']})"]
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return [f"{where} is {value!r} (expected > {schema['exclusiveMinimum']})"]
    out: list[str] = []
    if isinstance(value, dict):
        out += [f"{where}: missing `{k}`" for k in schema.get("required", []) if k not in value]
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if k in props:
                out += _problems(v, props[k], sub)
            elif extra is False:
                out.append(f"{sub} is not a field of a target file")
            elif isinstance(extra, dict):
                out += _problems(v, extra, sub)
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            out += _problems(v, schema["items"], f"{path}[{i}]")
    return out
