"""Shape inference: build the model at several widths and give every parameter a role.

The roles follow shared/RULES.md ("Parameter roles", after Tensor Programs V, Yang et al.
2022, arXiv:2203.03466): a parameter's width axes are the axes whose size differs between
the base width and a probe width. Which axis is fan-in and which is fan-out comes from the
module that owns the parameter (``nn.Linear`` is ``(out, in)``, ``nn.Embedding`` is
``(vocab, dim)`` with the vocabulary as its one-hot fan-in, transposed convolutions are
``(in, out, ...)``). A tied tensor is looked at through every module that holds it.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import nn

from ..errors import FactoryError, ShapeInferenceError
from ._readouts import match_any, resolve_readouts
from ._table import ROLES, ParamInfo, Role

__all__ = ["build", "runnable", "width_role", "current_role", "Usage", "collect_usages", "fan_axes", "infer_params",
           "match_any"]

# Modules whose weight is (fan_out, fan_in, *kernel) -- torch's own convention, as used by
# torch.nn.init._calculate_fan_in_and_fan_out.
_OUT_IN_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)
_MHA_WEIGHTS = {"in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"}


#: What the width being built is for, set by the caller (:func:`width_role`): "proxy" (a tuning
#: trial), "target" (transfer, load, the target run), "check" (a transfer-check sweep),
#: "coordinate-check"; named in every factory error so the user knows which setting to change.
_ROLE: contextvars.ContextVar[str] = contextvars.ContextVar("hptransfer_width_role", default="requested")

_ROLE_FIELDS = {"proxy": "widths.proxy", "target": "widths.target (or --width)", "check": "check.widths",
                "coordinate-check": "the coord-check widths"}


@contextlib.contextmanager
def width_role(role: str) -> Iterator[None]:
    """Name the role of the widths built inside the block (``"proxy"``, ``"target"``, ``"check"``,
    ``"coordinate-check"``) in factory errors."""
    token = _ROLE.set(role)
    try:
        yield
    finally:
        _ROLE.reset(token)


def current_role() -> str:
    """The role set by the innermost :func:`width_role` (``"requested"`` outside any)."""
    return _ROLE.get()


def _where(arg: Any, what: str) -> str:
    role = _ROLE.get()
    if what == "target":
        return f"width={arg} (the {role} width)"
    # base/probe builds are shape inference on the meta device, on behalf of the role's model
    return f"width={arg} (the {what} width, built on the meta device to infer which dimensions scale, for the {role} " \
           "model)"


def _fix(errors: list[str], what: str) -> str:
    # The messages without their "meta: " / "cpu: " prefixes: only the errors themselves say whether
    # the meta device was the trouble.
    text = " ".join(e.split(": ", 1)[-1] for e in errors).lower()
    role = _ROLE.get()
    setting = _ROLE_FIELDS.get(role, "the widths")
    if "divisible" in text or "head" in text:
        return (f"choose widths the model accepts (a multiple of the head count) in {setting}, or "
                "parametrization.base_width / probe_width for the base and probe widths.")
    if "unexpected keyword argument" in text:
        return ("a call does not take an argument it was given: in a recipe, set model.width_arg to the name of the "
                "factory's width argument (e.g. `width_arg: d_model`) and check model.kwargs; in Python, check the "
                "keyword arguments your factory passes on (the message above names the one refused).")
    if what != "target" and "meta" in text:
        return "make the factory build on any device, or pass probe_width= to parametrize."
    if what.startswith("probe"):
        return ("the factory must also build at the probe width (twice the base width unless probe_width= is given), "
                "which hptransfer builds to find which dimensions grow with width: make it accept that width, or, "
                "in Python, pass parametrize(..., probe_width=) a width it accepts.")
    return f"fix the factory so it builds at this width (run it once by hand), or change {setting}."


def runnable(factory: Callable[..., nn.Module], width: float, model: nn.Module | None) -> nn.Module:
    """A model at ``width`` that can run a real forward: ``model``, unless it is None or on the meta
    device (a meta build of the target, as the transfer makes), else a fresh CPU build under a private
    RNG (the caller's RNG state is unchanged)."""
    if model is not None and not any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        return model
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        return build(factory, width, meta=False, what="trace")


def build(factory: Callable[..., nn.Module], width: float, *, meta: bool, what: str) -> nn.Module:
    """Call ``factory(width)``; on the meta device when ``meta`` (no memory, no init cost).

    A factory that cannot run on the meta device (it reads tensor values while building, for
    example) is retried on the CPU. Any failure becomes a :class:`FactoryError` naming the width,
    its role (:func:`width_role`: proxy, target, check...) and a fix that matches the error.
    """
    arg = int(width) if float(width).is_integer() else width
    errors: list[str] = []
    attempts = ("meta", "cpu") if meta else ("default",)
    for device in attempts:
        try:
            if device == "default":
                model = factory(arg)
            else:
                with torch.device(device):
                    model = factory(arg)
        except FactoryError as exc:  # names the argument and the fix already; add which width this was
            setting = _ROLE_FIELDS.get(_ROLE.get())
            raise FactoryError(f"{exc} [at {_where(arg, what)}{', set in ' + setting if setting else ''}]") from None
        except Exception as exc:  # the user's code: report any failure, with its type
            errors.append(f"{device}: {type(exc).__name__}: {exc}")
            continue
        if not isinstance(model, nn.Module):
            raise FactoryError(
                f"the factory returned {type(model).__name__} at {_where(arg, what)}, not an nn.Module. "
                "Fix: make the factory return the model, e.g. `lambda width: MyModel(width)`."
            )
        return model
    same = len(errors) == 2 and errors[0].split(": ", 1)[1] == errors[1].split(": ", 1)[1]
    said = f"{errors[0].split(': ', 1)[1]} (on the meta device and on the CPU)" if same else "; ".join(errors)
    raise FactoryError(f"the model factory failed at {_where(arg, what)}: {said}. "
                       f"Fix: {_fix(errors, what)}")


@dataclass(frozen=True)
class Usage:
    """One place a tensor is registered: module path, the module's type, its local name."""

    module: str
    module_type: type
    local: str
    fan_out_axis: int | None
    fan_in_axis: int | None
    known: bool  # the module type fixes the fan-in/fan-out convention

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.local}" if self.module else self.local


def _axes(module: nn.Module, local: str, ndim: int) -> tuple[int | None, int | None, bool]:
    """(fan_out_axis, fan_in_axis, known) for a parameter of ``module``."""
    if ndim == 0:
        return None, None, True
    if ndim == 1:
        return 0, None, True
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and local == "weight":
        return 1, 0, True
    if isinstance(module, nn.modules.conv._ConvTransposeNd) and local == "weight":
        return 1, 0, True
    if isinstance(module, _OUT_IN_MODULES) and local == "weight":
        return 0, 1, True
    if isinstance(module, nn.MultiheadAttention) and local in _MHA_WEIGHTS:
        return 0, 1, True
    if isinstance(module, nn.RNNBase) and local.startswith("weight_"):  # weight_ih/hh: (gates*h, in)
        return 0, 1, True
    return 0, 1, False


def fan_axes(usage: Usage, width_axes: tuple[int, ...]) -> tuple[int | None, int | None]:
    """``(fan_out_axis, fan_in_axis)`` of a parameter registered as ``usage`` that grows along
    ``width_axes``. A raw tensor of a module hptransfer does not know whose two growing axes are not
    the (0, 1) of a conv weight is a stack of matrices in PyTorch's (out, in) layout: Hugging Face's
    fused MoE experts (``gate_up_proj``: experts x 2 intermediate x hidden), a batched einsum weight.
    Under μP every matrix of the stack follows the hidden rules; when both axes grow in proportion (the
    usual case) which of them is the fan-in does not change any multiplier."""
    if (not usage.known and len(width_axes) == 2
            and set(width_axes) != {usage.fan_out_axis, usage.fan_in_axis}):
        return width_axes[0], width_axes[1]
    return usage.fan_out_axis, usage.fan_in_axis


def collect_usages(model: nn.Module) -> dict[str, tuple[nn.Parameter, list[Usage]]]:
    """Canonical parameter name -> (parameter, every module registration of that tensor)."""
    canonical: dict[int, str] = {}
    out: dict[str, tuple[nn.Parameter, list[Usage]]] = {}
    for name, p in model.named_parameters():
        canonical[id(p)] = name
        out[name] = (p, [])
    for mod_name, module in model.named_modules(remove_duplicate=False):
        for local, p in module.named_parameters(recurse=False, remove_duplicate=False):
            if p is None or id(p) not in canonical:
                continue
            fo, fi, known = _axes(module, local, p.ndim)
            usage = Usage(mod_name, type(module), local, fo, fi, known)
            usages = out[canonical[id(p)]][1]
            if usage not in usages:
                usages.append(usage)
    return out


def _usage_role(usage: Usage, width_axes: tuple[int, ...], ndim: int) -> Role:
    if not width_axes:
        return "scalar"
    if len(width_axes) == 2:
        return "hidden"
    if ndim == 1:
        return "input"
    (axis,) = width_axes
    if usage.known and axis == usage.fan_in_axis:
        return "output"
    # A raw tensor of an unknown module (positional table, per-channel scale, ...) with one
    # width axis is vector-like; a raw readout must be declared with ``readout=``.
    return "input"


def infer_params(
    model: nn.Module,
    base: nn.Module,
    probe: nn.Module,
    *,
    widths: tuple[float, float, float],
    readout: Sequence[str] | None = None,
    roles: Mapping[str, str] | None = None,
    pick_readout: Callable[[list[str]], str | None] | None = None,
) -> tuple[dict[str, ParamInfo], dict[str, str]]:
    """Give every parameter of ``model`` a role.

    ``base`` and ``probe`` are the same factory at the base width and at a different probe
    width; ``widths`` is ``(width, base_width, probe_width)`` for messages. ``pick_readout``: see
    :func:`~hptransfer.parametrization._readouts.resolve_readouts`.

    Returns ``(params, readout_modules)``: :class:`ParamInfo` by canonical name, and for every
    readout applied through a module the ``module path -> parameter name`` it reads out with.
    """
    roles = dict(roles or {})
    for pattern, wanted in roles.items():
        if wanted not in ROLES:
            raise ShapeInferenceError(
                f"roles[{pattern!r}] = {wanted!r} is not a role. Fix: use one of {', '.join(ROLES)}."
            )
    usages = collect_usages(model)
    base_shapes = {n: tuple(p.shape) for n, p in base.named_parameters()}
    probe_shapes = {n: tuple(p.shape) for n, p in probe.named_parameters()}
    _check_names(set(usages), set(base_shapes), set(probe_shapes), widths)

    params: dict[str, ParamInfo] = {}
    readout_modules: dict[str, str] = {}
    output_candidates: list[str] = []
    for name, (p, regs) in usages.items():
        shape, b_shape, pr_shape = tuple(p.shape), base_shapes[name], probe_shapes[name]
        width_axes = _width_axes(name, shape, b_shape, pr_shape, widths)
        usage_roles = {_usage_role(u, width_axes, len(shape)) for u in regs}
        if len(width_axes) == 2:
            u0 = regs[0]
            if set(fan_axes(u0, width_axes)) != set(width_axes) and not match_any(name, list(roles)):
                raise ShapeInferenceError(
                    f"parameter {name!r} (shape {list(shape)}) grows along axes {list(width_axes)}, which are not "
                    f"its fan-in/fan-out axes ({u0.fan_out_axis}, {u0.fan_in_axis}) for {u0.module_type.__name__}. "
                    f"Fix: pin its role with roles={{{name!r}: 'hidden'}} if it is a width x width matrix."
                )
        output_regs = [u for u in regs if _usage_role(u, width_axes, len(shape)) == "output"]
        role: Role
        if usage_roles == {"output"}:
            role = "output"
            output_candidates.append(name)
        elif "output" in usage_roles:
            # Tied weights: an embedding table that is also the readout. The tensor keeps its
            # vector-like role (init and learning rate, as mup's MuSharedReadout); the readout
            # module gets the forward multiplier.
            role = "input"
            output_candidates.append(name)
        else:
            (role,) = usage_roles
        tied = tuple(u.qualname for u in regs if u.qualname != name)
        fan_in_mult, fan_out_mult = _mults(regs[0], role, shape, b_shape, width_axes)
        params[name] = ParamInfo(
            name=name,
            role=role,
            shape=shape,
            base_shape=b_shape,
            width_axes=width_axes,
            fan_in_mult=fan_in_mult,
            fan_out_mult=fan_out_mult,
            tied_to=tied,
        )
        for u in output_regs:
            readout_modules.setdefault(u.module, name)

    pinned = [n for n in output_candidates if match_any(n, list(roles))]
    candidates = [n for n in output_candidates if n not in pinned]
    readout_modules = {m: n for m, n in readout_modules.items() if n not in pinned}
    readout_modules = resolve_readouts(params, readout_modules, candidates, readout, pick_readout)
    _override_roles(params, usages, roles)
    _check_something_scales(params, widths)
    return params, readout_modules


def _override_roles(params: dict[str, ParamInfo], usages: dict[str, Any], roles: dict[str, str]) -> None:
    """Explicit ``roles`` win last, so a user can correct anything inferred from shapes."""
    for name, info in list(params.items()):
        for pattern, role in roles.items():
            if match_any(name, [pattern]):
                fi, fo = _mults(usages[name][1][0], role, info.shape, info.base_shape, info.width_axes)
                params[name] = replace(info, role=cast(Role, role), fan_in_mult=fi, fan_out_mult=fo)


def _check_something_scales(params: dict[str, ParamInfo], widths: tuple[float, float, float]) -> None:
    _, base_width, probe_width = widths
    if not any(i.width_axes for i in params.values()):
        raise ShapeInferenceError(
            f"no parameter changes shape between width {base_width:g} and width {probe_width:g}: nothing scales "
            "with width, so there is nothing to parametrize. Fix: make sure the factory passes its `width` "
            "argument to the layer sizes (e.g. nn.Linear(d_in, width)), or use a different width argument name."
        )


def _width_axes(name: str, shape: tuple[int, ...], b_shape: tuple[int, ...], pr_shape: tuple[int, ...],
                widths: tuple[float, float, float]) -> tuple[int, ...]:
    """The axes of a parameter that grow with width (shape differs between base and probe widths);
    raises when the shapes at three widths do not tell a consistent story."""
    width, base_width, probe_width = widths
    if not (len(shape) == len(b_shape) == len(pr_shape)):
        raise ShapeInferenceError(
            f"parameter {name!r} has {len(b_shape)} dims at width {base_width:g} but {len(shape)} at "
            f"width {width:g}. Fix: keep each parameter's rank fixed across widths."
        )
    width_axes = tuple(i for i, (b, q) in enumerate(zip(b_shape, pr_shape)) if b != q)
    fixed_changed = [i for i in range(len(shape)) if i not in width_axes and shape[i] != b_shape[i]]
    if fixed_changed:
        raise ShapeInferenceError(
            f"parameter {name!r}: axis {fixed_changed[0]} is {b_shape[fixed_changed[0]]} at widths "
            f"{base_width:g} and {probe_width:g} but {shape[fixed_changed[0]]} at width {width:g}; "
            "hptransfer cannot tell whether it scales with width. Fix: make every width-dependent size "
            "change between any two different widths (avoid max()/min() clamps in the factory)."
        )
    if len(width_axes) > 2:
        raise ShapeInferenceError(
            f"parameter {name!r} (shape {list(shape)}) has {len(width_axes)} dimensions that grow with width "
            f"(axes {list(width_axes)}); μP rules are defined for at most two (fan-in and fan-out). "
            f"Fix: keep at most two width-sized axes, or pin its role with roles={{{name!r}: 'hidden'}}."
        )
    return width_axes


def _mults(
    usage: Usage, role: str, shape: tuple[int, ...], b_shape: tuple[int, ...], width_axes: tuple[int, ...]
) -> tuple[float, float]:
    def ratio(axis: int | None) -> float:
        if axis is None or axis not in width_axes:
            return 1.0
        return shape[axis] / b_shape[axis]

    if len(shape) == 1:
        return 1.0, ratio(0)
    if len(shape) >= 2 and len(width_axes) == 1 and role == "input" and not usage.known:
        return 1.0, ratio(width_axes[0])
    fan_out_axis, fan_in_axis = fan_axes(usage, width_axes)
    return ratio(fan_in_axis), ratio(fan_out_axis)


def _check_names(names: set[str], base: set[str], probe: set[str], widths: tuple[float, float, float]) -> None:
    width, base_width, probe_width = widths
    for other, w in ((base, base_width), (probe, probe_width)):
        if other != names:
            only_here = sorted(names - other)[:5]
            only_there = sorted(other - names)[:5]
            raise ShapeInferenceError(
                f"parameter names differ between width {width:g} and width {w:g}: only at {width:g}: "
                f"{only_here or '-'}; only at {w:g}: {only_there or '-'}. hptransfer matches parameters by name. "
                "Fix: make the factory build the same modules at every width (depth and layer count must not "
                "depend on width)."
            )
