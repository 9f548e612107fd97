"""The scaling table: per-parameter width metadata, kept off the tensors.

``mup`` stores an ``infshape`` attribute on every tensor, which ``deepcopy``,
``load_state_dict``, ``DataParallel`` and FSDP silently drop. hptransfer keeps the same
facts in one plain, serialisable table keyed by parameter name and attached to the root
module. Parameter names are stored *without* wrapper prefixes; lookups strip the
``module.`` (DDP/DataParallel) and ``_orig_mod.`` (``torch.compile``) prefixes as whole
prefixes, never as character sets.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from ..errors import ParametrizationError, warn

__all__ = ["Role", "ParamInfo", "ModuleScaling", "ScalingTable", "scaling_table", "unwrap", "strip_prefix"]

#: How a parameter behaves as width grows (shared/RULES.md, "Parameter roles").
#: ``input``: exactly one width dimension, its fan-out (embeddings, first layer, biases, gains).
#: ``hidden``: fan-in and fan-out both grow. ``output``: only fan-in grows (the readout).
#: ``scalar``: nothing grows.
Role = Literal["input", "hidden", "output", "scalar"]
ROLES: tuple[str, ...] = ("input", "hidden", "output", "scalar")

#: Wrapper prefixes added by DDP/DataParallel (``module.``) and ``torch.compile`` (``_orig_mod.``).
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

_TABLE_ATTR = "_hptransfer_table"


@dataclass(frozen=True)
class ParamInfo:
    """Width facts about one parameter.

    ``shape`` is the shape at the model's width, ``base_shape`` at the base width; ``width_axes``
    the axes that grow with width. ``fan_in_mult`` and ``fan_out_mult`` are ratios
    ``dim / base_dim`` of the fan-in and fan-out axes (1.0 when that axis does not grow).
    ``tied_to`` lists other names of the same tensor (tied weights). ``init_scale`` is the
    factor applied to the factory's init by the parametrization (1.0 = kept as drawn);
    ``zero_init`` marks a tensor zeroed by an option. ``readout_module`` names the module whose
    input carries this tensor's readout multiplier (``None``: not a hooked readout).
    ``depth_mult`` is ``L / L_base`` for a parameter inside a block of the depth stack under a
    depth-scaled parametrization, 1.0 elsewhere (and for every parameter under ``sp``/``mup``).

    The init law of the factory's own draw, measured at two widths (``_init_law``):
    ``init_class`` (``fan_in``, ``constant``, ``zero``, ``structured``, ``fixed`` or
    ``unmeasured``), ``init_exponent`` (RMS ~ fan-in^a, or own width axis^a; ``None`` when not
    a power law), ``init_rms`` (root-mean-square of the draw at the base width) and
    ``sp_correction`` (the factor turning the factory's draw at this width into the SP, variance
    1/fan_in, draw that μP's rules start from; 1.0 at the base width).

    ``lr_folded`` is the Adam LR multiplier that ``lr_form="multipliers"`` moved into the forward
    (the stored tensor is divided by it and its module multiplies it back; 1.0: nothing moved).
    """

    name: str
    role: Role
    shape: tuple[int, ...]
    base_shape: tuple[int, ...]
    width_axes: tuple[int, ...]
    fan_in_mult: float
    fan_out_mult: float
    tied_to: tuple[str, ...] = ()
    init_scale: float = 1.0
    zero_init: bool = False
    readout_module: str | None = None
    depth_mult: float = 1.0
    init_class: str = "unmeasured"
    init_exponent: float | None = None
    init_rms: float | None = None
    sp_correction: float = 1.0
    lr_folded: float = 1.0

    @property
    def width_mult(self) -> float:
        """The ``mup`` "main" multiplier: fan-in ratio if fan-in grows, else fan-out ratio."""
        return self.fan_in_mult if self.fan_in_mult != 1.0 else self.fan_out_mult

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("shape", "base_shape", "width_axes", "tied_to"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParamInfo:
        d = dict(d)
        for k in ("shape", "base_shape", "width_axes", "tied_to"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)


@dataclass(frozen=True)
class ModuleScaling:
    """A forward multiplier applied to a module by hook (not stored on tensors).

    ``kind``: ``"input"`` multiplies the module's first positional input (readout
    multiplier, as ``mup.MuReadout`` does), ``"output"`` multiplies its output, ``"constant"``
    multiplies its output to hold a width-dependent constant by which the caller multiplies it at its
    base-width value (``_constants``; the coordinate check measures the module's output before it).
    """

    module: str
    kind: Literal["input", "output", "constant"]
    multiplier: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ScalingTable:
    """Everything a parametrization decided for one model, keyed by parameter name.

    Attributes:
        parametrization: registry name of the rule family (``"sp"``, ``"mup"``, ...).
        width, base_width: the factory widths of the model and of the base shapes.
        params: :class:`ParamInfo` per canonical parameter name (tied copies listed in
            ``tied_to``, not as separate entries).
        module_scalings: forward multipliers applied by hooks.
        attention: ``{"<kind>:<module>": {head_dim: factor}}`` — factors that multiply the attention
            softmax scale, by runtime head dimension; kind ``sdpa`` (calls rewritten), ``mha``
            (``nn.MultiheadAttention``'s query) or ``scaling`` (a Hugging Face module's ``scaling``
            attribute, one factor, for every attention implementation).
        options: the options the model was parametrized with (output_mult, ...).
        depth: the depth axis (empty when the factory takes no depth): ``depth``, ``base_depth``,
            ``alpha`` (``None`` under ``sp``/``mup``: built at that depth, not scaled), ``stacks``
            (module paths of the block lists) and ``branches`` (residual-branch modules whose
            output is multiplied by ``(base_depth/depth)^alpha``).
        notes: what hptransfer found but could not rewrite (attention computed by hand, ...),
            one sentence each with the module and the fix.
    """

    parametrization: str
    width: float
    base_width: float
    params: dict[str, ParamInfo] = field(default_factory=dict)
    module_scalings: list[ModuleScaling] = field(default_factory=list)
    attention: dict[str, dict[int, float]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    depth: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[ParamInfo]:
        return iter(self.params.values())

    def __len__(self) -> int:
        return len(self.params)

    def info(self, name: str) -> ParamInfo:
        """Look up a parameter by name; wrapper prefixes (``module.``, ``_orig_mod.``) are stripped."""
        key = strip_prefix(name)
        if key in self.params:
            return self.params[key]
        for info in self.params.values():
            if key in info.tied_to:
                return info
        raise ParametrizationError(
            f"parameter {name!r} is not in the scaling table of this model (known: "
            f"{_short_list(self.params)}). Fix: build the model and its optimizer groups from the "
            "same hptransfer.parametrize(...) call; parameters added after parametrize() have no role."
        )

    def by_role(self, role: str) -> list[str]:
        return [n for n, i in self.params.items() if i.role == role]

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-safe dict; :meth:`from_dict` inverts it exactly."""
        return {
            "parametrization": self.parametrization,
            "width": self.width,
            "base_width": self.base_width,
            "params": {n: i.to_dict() for n, i in self.params.items()},
            "module_scalings": [m.to_dict() for m in self.module_scalings],
            "attention": {k: {int(d): float(f) for d, f in v.items()} for k, v in self.attention.items()},
            "options": dict(self.options),
            "depth": dict(self.depth),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScalingTable:
        return cls(
            parametrization=d["parametrization"],
            width=d["width"],
            base_width=d["base_width"],
            params={n: ParamInfo.from_dict(i) for n, i in d["params"].items()},
            module_scalings=[ModuleScaling(**m) for m in d.get("module_scalings", [])],
            attention={k: {int(h): float(f) for h, f in v.items()} for k, v in d.get("attention", {}).items()},
            options=dict(d.get("options", {})),
            depth=dict(d.get("depth", {})),
            notes=list(d.get("notes", [])),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def summary(self) -> str:
        """A human-readable table: one line per parameter with role and multipliers."""
        lines = [
            f"parametrization={self.parametrization} width={self.width:g} base_width={self.base_width:g}",
            f"{'parameter':48s} {'role':7s} {'shape':>16s} {'fan_in x':>9s} {'fan_out x':>9s} {'init x':>7s} "
            f"{'factory init (rms at base)':26s}",
        ]
        for info in self.params.values():
            shape = "x".join(map(str, info.shape)) or "()"
            rms = "" if info.init_rms is None else f" ({info.init_rms:.3g})"
            lines.append(
                f"{info.name:48s} {info.role:7s} {shape:>16s} {info.fan_in_mult:9.3g} "
                f"{info.fan_out_mult:9.3g} {info.init_scale:7.3g} {info.init_class + rms:26s}"
            )
        if self.depth:
            lines.append(f"depth={self.depth['depth']} base_depth={self.depth['base_depth']} "
                         f"alpha={self.depth.get('alpha')} stacks={self.depth.get('stacks', [])}")
        folded = [i for i in self.params.values() if i.lr_folded != 1.0]
        if folded:
            lines.append(f"lr_form=multipliers: {len(folded)} tensors stored divided by their Adam LR multiplier, "
                         "which their modules apply in the forward")
        for m in self.module_scalings:
            lines.append(f"module {m.module}: {m.kind} x{m.multiplier:.4g} ({m.reason})")
        for kind, factors in self.attention.items():
            for d, f in factors.items():
                lines.append(f"attention ({kind}) head_dim={d}: softmax scale x{f:.4g}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def strip_prefix(name: str) -> str:
    """Remove leading wrapper prefixes (``module.``, ``_orig_mod.``), each as a whole prefix.

    ``'module.embed.weight'`` becomes ``'embed.weight'`` (a character-set strip would give
    ``'bed.weight'``).
    """
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                changed = True
    return name


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DDP/DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    seen = 0
    while seen < 16:
        seen += 1
        inner = model.__dict__.get("_modules", {})
        if "_orig_mod" in inner:
            model = inner["_orig_mod"]
        elif "module" in inner and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            model = inner["module"]
        else:
            return model
    return model


def scaling_table(model: nn.Module) -> ScalingTable:
    """The :class:`ScalingTable` of a model made by :func:`hptransfer.parametrize`.

    Works through DDP/DataParallel and ``torch.compile`` wrappers.
    """
    table = getattr(unwrap(model), _TABLE_ATTR, None)
    if table is None:
        raise ParametrizationError(
            f"{type(unwrap(model)).__name__} has no hptransfer scaling table. Fix: build it with "
            "hptransfer.parametrize(factory, width=..., base_width=...), or attach a saved table with "
            "hptransfer.attach_table(model, ScalingTable.from_dict(...))."
        )
    return table


def _short_list(names: Any, n: int = 6) -> str:
    names = list(names)
    more = f", ... ({len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def warn_no_readout(params: dict[str, Any], readout: Any, readout_modules: dict[str, str]) -> None:
    """Warn when no parameter got the output role: μP's readout scaling then applies to nothing.

    A model whose last layer's fan-out does not change with width usually has one; when none is
    found (an output dimension that scales, a readout through a functional call) the candidates
    are the parameters with a width fan-in, named so the user can pass ``readout=``.
    """
    if readout is not None or readout_modules or any(getattr(i, "role", None) == "output" for i in params.values()):
        return
    candidates = [n for n, i in params.items() if getattr(i, "role", None) == "hidden"][-3:]
    warn(
        "no parameter has the output (readout) role, so the readout is not scaled and μP transfer will not hold. "
        f"Candidates (the last hidden-role parameters): {candidates or '(none)'}. Fix: pass readout='<module name>' to "
        "parametrize (in a recipe: a model whose last layer maps the width to a fixed number of outputs).",
        breaks_transfer=True)
