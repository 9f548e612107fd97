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

    number = {"type": "number"}
    group = {"type": "object", "required": ["params", "lr", "weight_decay", "lr_mult"], "additionalProperties": False,
             "properties": {"params": {"type": "array", "items": {"type": "string"}}, "lr": number,
                            "weight_decay": number, "lr_mult": number}}
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
            "provenance": {"type": "object", "required": ["study", "trial", "recipe_hash", "hptransfer_version"]},
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
    return TargetFile(spec=spec, groups=list(data.get("groups") or []), base_shapes=dict(data.get("base_shapes") or {}),
                      transfer=dict(data.get("transfer") or {}), provenance=dict(data.get("provenance") or {}))
