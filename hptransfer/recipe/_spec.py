"""Typed, documented recipe sections: a field helper and a generic validating parser.

Each section of a recipe is a dataclass whose fields are declared with :func:`spec_field`,
which stores the field's documentation and its expected kind in the field metadata. One
parser (:func:`parse_section`) turns a YAML mapping into that dataclass and *collects*
problems as ``(field_path, message)`` pairs instead of raising at the first one, so a user
sees every mistake at once. The same metadata generates the reference page and CLI help.

Extension sections (e.g. a ``check:`` section written elsewhere) use the same helpers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import RecipeError

__all__ = ["spec_field", "parse_section", "field_docs", "Problems", "did_you_mean", "import_object", "is_object",
           "object_path", "plain"]

#: Collected validation problems: ``(field path, message with the fix)``.
Problems = list[tuple[str, str]]

_MISSING = dataclasses.MISSING
KINDS = ("int", "float", "bool", "str", "choice", "ints", "floats", "mapping", "any", "section", "strs")


def spec_field(
    default: Any = _MISSING,
    *,
    doc: str,
    kind: str,
    choices: Sequence[str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_min: bool = False,
    optional: bool = False,
    factory: Any = _MISSING,
    section: type | None = None,
    auto: bool = False,
    objects: bool = False,
) -> Any:
    """A dataclass field carrying its documentation and validation kind.

    Args:
        default: the default value (omit for a required field).
        doc: one or two sentences: what the field means, its unit and its default.
        kind: one of ``int``, ``float``, ``bool``, ``str``, ``choice``, ``ints`` (an int or a
            list of ints, stored as a tuple), ``floats`` (the same for numbers), ``strs``, ``mapping``,
            ``any``, ``section``.
        choices: allowed values for ``kind="choice"``.
        minimum, maximum: numeric bounds (inclusive unless ``exclusive_min``).
        optional: ``null`` is accepted (stored as ``None``).
        factory: default factory (for mutable defaults and nested sections).
        section: the nested dataclass for ``kind="section"``.
        auto: the string ``auto`` is accepted too (kept as ``"auto"``; the consumer resolves it).
        objects: from Python, an in-memory object (a function, a class, a task instance) is accepted
            as is, beside the YAML value (an import path, a name). The Python API builds recipes this
            way; YAML, the recipe hash and ``target.yaml`` write it as :func:`object_path`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown field kind {kind!r}")
    meta = {
        "doc": doc, "kind": kind, "choices": tuple(choices) if choices else None, "minimum": minimum,
        "maximum": maximum, "exclusive_min": exclusive_min, "optional": optional, "section": section,
        "auto": auto, "objects": objects,
    }
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for a near miss, else an empty string."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def parse_section(cls: type, data: Any, path: str, problems: Problems) -> Any:
    """Build dataclass ``cls`` from mapping ``data``; append problems; never raise for bad input.

    ``path`` is the field path of this section (``"optimizer"``). Unknown keys, missing
    required fields, wrong types and out-of-range numbers each add one problem. Returns an
    instance built from the valid values and the defaults (``None`` if required fields are
    missing or ``data`` is not a mapping).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append((path, f"must be a mapping of fields, got {_describe(data)}. Fix: write `{path}:` followed "
                               f"by indented `field: value` lines."))
        return None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("kind")}
    for key in data:
        if key not in fields:
            problems.append((_join(path, key), f"unknown field.{did_you_mean(key, list(fields))} Known fields of "
                                               f"{path or 'the recipe'}: {', '.join(fields)}."))
    kwargs: dict[str, Any] = {}
    complete = True
    for name, f in fields.items():
        fpath = _join(path, name)
        if name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:
                problems.append((fpath, f"is required. Fix: add `{name}:` ({f.metadata['doc'].split('.')[0]})."))
                complete = False
            continue
        ok, value = _convert(dict(f.metadata), data[name], fpath, problems)
        if ok:
            kwargs[name] = value
        elif f.default is _MISSING and f.default_factory is _MISSING:
            complete = False  # already reported; do not build the section without it
    if not complete:
        return None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a section's own __post_init__ check
        problems.append((path, str(exc)))
        return None


def _convert(meta: dict[str, Any], value: Any, path: str, problems: Problems) -> tuple[bool, Any]:
    kind = meta["kind"]
    value = _scalar(value)
    if value is None:
        if meta["optional"]:
            return True, None
        if kind == "section":
            value = {}
        elif kind == "mapping":
            return True, {}
        else:
            problems.append((path, f"must not be empty (null). Fix: give a {kind} value or delete the line."))
            return False, None
    if kind == "any" or (meta.get("auto") and value == "auto") or (meta.get("objects") and is_object(value)):
        return True, value
    if kind == "section":
        if isinstance(value, meta["section"]):  # a section built in Python (e.g. TolerancesSpec(...))
            return True, value
        out = parse_section(meta["section"], value, path, problems)
        return out is not None, out
    if kind == "mapping":
        if not isinstance(value, dict):
            problems.append((path, f"must be a mapping (`key: value` lines), got {_describe(value)}."))
            return False, None
        return True, dict(value)
    if kind == "bool":
        if not isinstance(value, bool):
            problems.append((path, f"must be true or false, got {_describe(value)}."))
            return False, None
        return True, value
    if kind in ("str", "choice"):
        if not isinstance(value, str) or not value:
            problems.append((path, f"must be a non-empty string, got {_describe(value)}."))
            return False, None
        if kind == "choice" and value not in meta["choices"]:
            problems.append((path, f"{value!r} is not one of {', '.join(meta['choices'])}."
                                   f"{did_you_mean(value, meta['choices'])}"))
            return False, None
        return True, value
    if kind == "strs":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(s, str) and s for s in items):
            problems.append((path, f"must be a string or a non-empty list of strings, got {_describe(value)}."))
            return False, None
        return True, tuple(items)
    if kind in ("ints", "floats"):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items:
            problems.append((path, f"must not be an empty list. Fix: give at least one "
                                   f"{'integer' if kind == 'ints' else 'number'}."))
            return False, None
        out = []
        for i, item in enumerate(items):
            ok, v = _number(meta, _scalar(item), f"{path}[{i}]" if isinstance(value, (list, tuple)) else path, problems,
                            integer=kind == "ints")
            if not ok:
                return False, None
            out.append(v)
        repeated = sorted({v for v in out if out.count(v) > 1})
        if kind == "ints" and repeated:  # widths, depths, seeds: a set each (a repeat trains every run twice)
            problems.append((path, f"lists {', '.join(map(str, repeated))} more than once. Fix: list each value once."))
            return False, None
        return True, tuple(out)
    return _number(meta, value, path, problems, integer=(kind == "int"))


def _number(meta: dict[str, Any], value: Any, path: str, problems: Problems, *, integer: bool) -> tuple[bool, Any]:
    want = "an integer" if integer else "a number"
    if isinstance(value, str) and not integer:
        # YAML 1.1 reads `1e-3` (no dot) as a string; accept it rather than surprise users.
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:  # float() would overflow
        problems.append((path, f"is far too large ({len(str(abs(value)))} digits). Fix: give a value "
                               f"<= {meta['maximum'] if meta['maximum'] is not None else 2**63:g}."))
        return False, None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        problems.append((path, f"must be {want}, got {_describe(value)}."))
        return False, None
    if not math.isfinite(float(value)):
        problems.append((path, f"must be finite, got {value!r}."))
        return False, None
    value = int(value) if integer else float(value)
    lo, hi = meta["minimum"], meta["maximum"]
    if lo is not None and (value <= lo if meta["exclusive_min"] else value < lo):
        rel = ">" if meta["exclusive_min"] else ">="
        problems.append((path, f"must be {rel} {lo:g}, got {value!r}."))
        return False, None
    if hi is not None and value > hi:
        problems.append((path, f"must be <= {hi:g}, got {value!r}."))
        return False, None
    return True, value


def field_docs(cls: type, path: str = "") -> list[tuple[str, str, str, str]]:
    """``(field path, kind, default, doc)`` for every field of ``cls``, nested sections expanded."""
    rows = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("kind"):
            continue
        fpath = _join(path, f.name)
        if meta["kind"] == "section":
            rows.append((fpath, "section", "", meta["doc"]))
            rows += field_docs(meta["section"], fpath)
            continue
        if f.default is not _MISSING:
            default = "null" if f.default is None else repr(f.default).lower() if isinstance(f.default, bool) \
                else str(f.default)
        elif f.default_factory is not _MISSING:
            d = f.default_factory()
            default = "{}" if d == {} else "[]" if d in ((), []) else str(d)
        else:
            default = "(required)"
        kind = meta["kind"]
        if kind == "choice":
            kind = " / ".join(meta["choices"])
        if meta.get("auto"):
            kind += " / auto"
        rows.append((fpath, kind, default, meta["doc"]))
    return rows


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def import_object(spec: Any, path: str = "import path") -> Any:
    """Import ``package.module:attribute`` (an in-memory object, given from Python, is returned as is).

    Raises RecipeError naming ``path`` on failure."""
    if is_object(spec):
        return spec
    if isinstance(spec, str) and ("<" in spec or spec.startswith("partial(")):
        raise RecipeError([(path, f"{spec!r} names an object that cannot be imported (a lambda, a function defined "
                                  "inside another, a partial, an instance): it was given from Python. Fix: pass the "
                                  "object itself again (e.g. factory= to hptransfer.load()), or define it at module "
                                  "level.")])
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise RecipeError([(path, f"{spec!r} is not an import path. Fix: write `package.module:function`.")])
    # The console script's sys.path[0] is its bin directory; search the current directory first,
    # as `python -m` does (spawned workers inherit sys.path).
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise RecipeError([(path, f"cannot import module {module!r}: {exc}. Fix: check the name and that it is "
                                  "on PYTHONPATH (the current directory is).")]) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RecipeError([(path, f"module {module!r} has no attribute {attr!r}.")])
        obj = getattr(obj, part)
    if not callable(obj):
        raise RecipeError([(path, f"{spec!r} is not callable.")])
    return obj


_PLAIN = (str, int, float, bool, list, tuple, dict, type(None))


def _is_section(value: Any) -> bool:
    """A spec section instance: a dataclass whose fields are declared with :func:`spec_field`."""
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)
            and any(f.metadata.get("kind") for f in dataclasses.fields(value)))


def _scalar(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (a sweep's ``np.arange`` seeds, an ``np.float32`` LR)."""
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") and \
        getattr(value, "ndim", 1) == 0 else value


def object_name(obj: Any) -> str:
    """A short name for an object or a string given as a field (an optimizer class -> ``AdamW``)."""
    return obj if isinstance(obj, str) else str(getattr(obj, "__name__", None) or object_path(obj))


def is_object(value: Any) -> bool:
    """Whether ``value`` is an in-memory Python object (a function, class or instance), not YAML data."""
    return not isinstance(value, _PLAIN)


def object_path(obj: Any) -> str:
    """How an in-memory object is written in YAML and hashed: ``module:qualname`` for a function or
    class (importable unless the name holds ``<lambda>`` or ``<locals>``), ``partial(...)`` with its
    arguments, or an instance's class path with its public fields (a dataclass's repr). Stable across
    processes: no memory addresses."""
    if isinstance(obj, functools.partial):
        args = [object_path(a) if is_object(a) else repr(a) for a in obj.args]
        args += [f"{k}={object_path(v) if is_object(v) else repr(v)}" for k, v in sorted(obj.keywords.items())]
        return f"partial({', '.join([object_path(obj.func), *args])})"
    qual = getattr(obj, "__qualname__", None)
    if isinstance(qual, str) and (isinstance(obj, type) or callable(obj)) and hasattr(obj, "__module__"):
        return f"{obj.__module__}:{qual}"
    cls = type(obj)
    if dataclasses.is_dataclass(obj):
        inner = ", ".join(f"{f.name}={getattr(obj, f.name)!r}" for f in dataclasses.fields(obj) if f.repr)
    else:
        state = {k: v for k, v in sorted(getattr(obj, "__dict__", {}).items()) if not k.startswith("_")}
        inner = ", ".join(f"{k}={object_path(v) if is_object(v) else repr(v)}" for k, v in state.items())
    return f"{cls.__module__}:{cls.__qualname__}({inner})"


def plain(value: Any) -> Any:
    """Plain YAML/JSON data from nested spec sections (dataclasses of :func:`spec_field` fields), tuples
    and mappings; in-memory objects (other dataclasses included) as :func:`object_path`."""
    if _is_section(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    value = _scalar(value)
    if is_object(value):
        return object_path(value)
    return value
