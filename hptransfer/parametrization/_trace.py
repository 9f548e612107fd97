"""Watching a forward pass: which modules compute attention, with which head dimension.

One :class:`torch.overrides.TorchFunctionMode` (:class:`AttentionTracer`) sees every torch call
of a forward pass together with the innermost module running it. It records

* ``F.scaled_dot_product_attention`` calls: ``(module, head_dim)`` (rewritten by ``_attention``);
* attention written by hand: a matrix product whose result is later fed to ``softmax`` in the
  same module (``softmax(q @ k.transpose(-2, -1) * s)``, as in Hugging Face "eager" attention
  and nanoGPT's non-flash path). hptransfer cannot rewrite its scale, so it is reported;
* optionally (``measure_scale``) the softmax scale each attention call actually uses, for the
  coordinate check: for SDPA its ``scale`` argument after hptransfer's rewrite (default
  1/sqrt(d)), for hand-written attention the ratio of the softmax input to ``q @ k^T``, for
  ``nn.MultiheadAttention`` 1/sqrt(d) times the rewrite's factor on its query projection;
* the last ``(module, operation)`` before a failure, so that an error can name both.

:func:`trace_attention` runs a model on the meta device, with torch's factory functions
(``torch.ones(T, T)`` without ``device=``) defaulting to it, or for real.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from .._io import user_frame
from ..errors import ParametrizationError, ShapeInferenceError, warn
from . import _attention
from ._rules import Parametrization
from ._shapes import build, runnable
from ._table import ScalingTable

__all__ = [
    "AttentionTracer", "TraceFailure", "trace_attention", "scale_traced_attention", "module_stack", "to_meta",
    "as_call", "run_under",
]

_MATMULS = {torch.matmul, Tensor.matmul, Tensor.__matmul__, torch.bmm, Tensor.bmm, torch.einsum, torch.baddbmm}
_SOFTMAXES = {F.softmax, torch.softmax, Tensor.softmax, F.log_softmax}


class TraceFailure(Exception):
    """The traced forward raised: in ``module`` (innermost), at torch operation ``op``."""

    def __init__(self, module: str, op: str, error: BaseException):
        super().__init__(module, op, error)
        self.module, self.op, self.error = module, op, error

    def __str__(self) -> str:
        return f"in module {self.module or '<root>'!r} at {self.op} ({type(self.error).__name__}: {self.error})"


class AttentionTracer(TorchFunctionMode):
    """Records attention calls per innermost module while active (see the module docstring).

    ``stack`` is the list kept by :func:`module_stack`; ``sdpa`` and ``by_hand`` are
    ``(module, head_dim)`` per call, ``scales`` (with ``measure_scale``) the ``(head_dim, softmax
    scale)`` of each call by module.
    """

    def __init__(self, stack: list[str], measure_scale: bool = False, modules: dict[str, nn.Module] | None = None):
        super().__init__()
        self.stack, self.measure_scale = stack, measure_scale
        self.modules = modules or {}  # name -> module, for nn.MultiheadAttention's scale
        self.sdpa: list[tuple[str, int]] = []
        self.by_hand: list[tuple[str, int]] = []
        self.scales: dict[str, list[tuple[int, float]]] = {}
        self.last: tuple[str, str] = ("", "")
        self._scores: dict[tuple[str, tuple[int, ...]], tuple[int, Tensor | None]] = {}

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        where = self.stack[-1]
        self.last = (where, str(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))))
        if func is F.scaled_dot_product_attention:
            q = args[0] if args else kwargs["query"]
            d = int(q.shape[-1])
            self.sdpa.append((where, d))
            scale = kwargs.get("scale", args[6] if len(args) > 6 else None)
            self._record(where, d, 1.0 / math.sqrt(d) if scale is None else float(scale))
        elif func is F.multi_head_attention_forward and self.measure_scale:
            self._record_mha(where, args, kwargs)
        elif func in _SOFTMAXES and args and isinstance(args[0], Tensor):
            found = self._scores.pop((where, tuple(args[0].shape)), None)
            if found is not None:
                d, scores = found
                self.by_hand.append((where, d))
                if scores is not None and not args[0].is_meta:
                    self._record(where, d, _ratio(args[0], scores))
        out = func(*args, **kwargs)
        if func in _MATMULS and isinstance(out, Tensor) and out.ndim >= 3 and func is not torch.einsum:
            a = args[0] if isinstance(args[0], Tensor) else None
            if a is not None and a.ndim >= 3:  # q @ k^T: (.., T, d) @ (.., d, S) -> (.., T, S)
                keep = out.detach() if self.measure_scale and not out.is_meta else None
                self._scores[(where, tuple(out.shape))] = (int(a.shape[-1]), keep)
        return out

    def _record_mha(self, where: str, args: tuple, kwargs: dict) -> None:
        """``nn.MultiheadAttention``'s softmax scale: its own 1/sqrt(d) times the factor by which the
        query rows of the projection it was handed differ from the module's parameter (the rewrite
        scales those rows). Its inner SDPA call runs inside this one, out of this mode's sight."""
        a = _attention._MHA_SIG.bind(*args, **kwargs).arguments
        e, heads = int(a["embed_dim_to_check"]), int(a["num_heads"])
        separate = bool(a.get("use_separate_proj_weight", False))
        passed = a.get("q_proj_weight" if separate else "in_proj_weight")
        own = getattr(self.modules.get(where), "q_proj_weight" if separate else "in_proj_weight", None)
        if not isinstance(passed, Tensor) or not isinstance(own, Tensor) or passed.is_meta:
            return
        norm = float(own[:e].detach().float().norm())
        if norm > 0:
            d = e // heads
            self._record(where, d, float(passed[:e].detach().float().norm()) / norm / math.sqrt(d))

    def _record(self, where: str, d: int, scale: float) -> None:
        if not self.measure_scale:
            return
        module = self.modules.get(where)
        if module is not None and _attention.scaling_attribute(module) is not None and math.isclose(scale, 1.0):
            # A Hugging Face module that multiplies the query by its ``scaling`` before attention and
            # hands 1.0 on (OPT): its scale is the attribute's current (rewritten) value.
            current = getattr(module, "scaling", 1.0)
            scale = float(current) if isinstance(current, (int, float)) else scale
        self.scales.setdefault(where, []).append((d, scale))


def _ratio(logits: Tensor, scores: Tensor) -> float:
    """The factor between raw scores ``q @ k^T`` and the softmax input, over unmasked entries (the
    median, so an additive mask of -inf or the dtype's minimum does not count)."""
    x, s = logits.detach().float(), scores.float()
    ok = torch.isfinite(x) & (x.abs() < 1e30) & (s.abs() > 1e-12)
    if not bool(ok.any()):
        return float("nan")
    return float((x[ok] / s[ok]).median())


def _push(stack: list[str], name: str, module: nn.Module, args: Any) -> None:
    stack.append(name)


def _pop(stack: list[str], module: nn.Module, args: Any, output: Any) -> None:
    stack.pop()  # returns None: a forward hook that returned a value would replace the output


def module_stack(model: nn.Module) -> tuple[list[str], list[Any]]:
    """A list holding the innermost running module's name (``""`` = root) and the hook handles."""
    stack = [""]
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        handles.append(module.register_forward_pre_hook(functools.partial(_push, stack, name)))
        handles.append(module.register_forward_hook(functools.partial(_pop, stack), always_call=True))
    return stack, handles


def to_meta(x: Any) -> Any:
    return tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, x)


def as_call(example_input: Any) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of an example input: a dict is keyword args, a tuple positional args."""
    if isinstance(example_input, dict):
        return (), example_input
    if isinstance(example_input, tuple):
        return example_input, {}
    return (example_input,), {}


@torch.no_grad()
def trace_attention(model: nn.Module, example_input: Any, *, meta: bool) -> AttentionTracer:
    """Run ``model`` on ``example_input`` and return what the tracer saw.

    ``meta=True``: the input is moved to the meta device and factory functions default to it
    (no memory, no compute; fails on data-dependent code such as ``.item()`` or ``torch.equal``).
    ``meta=False``: a real forward in eval mode (training flags restored, RNG state untouched),
    for models whose forward reads values. Raises :class:`TraceFailure` naming module and op.
    """
    stack, handles = module_stack(model)
    tracer = AttentionTracer(stack)
    try:
        run_under(model, tracer, example_input, meta=meta)
    except Exception as exc:  # the user's forward: report where it failed
        raise TraceFailure(tracer.last[0], tracer.last[1], exc) from exc
    finally:
        for h in handles:
            h.remove()
    return tracer


@torch.no_grad()
def run_under(model: nn.Module, mode: TorchFunctionMode, example_input: Any, *, meta: bool) -> None:
    """One forward of ``model`` on ``example_input`` with ``mode`` active: on the meta device (input
    moved there, factory functions defaulting to it), or for real in eval mode with the RNG state
    untouched; training flags are restored either way."""
    args, kwargs = as_call(example_input)
    modes = {m: m.training for m in model.modules()}
    try:
        if meta:
            with torch.device("meta"), mode:
                model(*to_meta(args), **to_meta(kwargs))
        else:
            model.eval()
            with torch.random.fork_rng(devices=[]), mode:
                model(*args, **kwargs)
    finally:
        for m, training in modes.items():
            m.training = training


def scale_traced_attention(
    model: nn.Module,
    table: ScalingTable,
    rule: Parametrization,
    factory: Callable[..., nn.Module],
    example_input: Any,
) -> None:
    """Fill ``table.attention`` with the SDPA factors of ``model`` (at ``table.width``), the factors
    of Hugging Face attention modules that read their scale from ``self.scaling`` (any attention
    implementation, eager included), and warn about other attention computed by hand.

    The target is traced first (on the meta device, else for real on ``model`` itself); the base
    width is traced only when the target calls SDPA outside ``nn.MultiheadAttention`` (whose
    scaling needs no trace), so models whose only attention is ``nn.MultiheadAttention`` never
    need an input that fits the base width.
    """
    calls = _trace_width(factory, table.width, example_input, real=model)
    owned = {m for m, _ in calls.sdpa + calls.by_hand if _owns_scaling(model, m)}
    _report_by_hand([c for c in calls.by_hand if c[0] not in owned], table, rule)
    sdpa = [c for c in calls.sdpa if c[0] not in owned]
    if not sdpa and not owned:
        return
    base_calls = _trace_width(factory, table.base_width, example_input, real=None)
    base_sdpa = [c for c in base_calls.sdpa if c[0] not in owned]
    if [m for m, _ in sdpa] != [m for m, _ in base_sdpa]:
        raise ShapeInferenceError(
            f"the model calls scaled_dot_product_attention from different modules at width {table.width:g} "
            f"({[m for m, _ in sdpa][:4]}) and at base width {table.base_width:g} "
            f"({[m for m, _ in base_sdpa][:4]}). Fix: keep the attention structure fixed across widths."
        )
    for (module, d), (_, d0) in zip(sdpa, base_sdpa):
        factors = table.attention.setdefault(f"sdpa:{module}", {})
        f = rule.attention_factor(d, d0, table.options["attn_mult"])
        if factors.get(d, f) != f:
            raise ShapeInferenceError(
                f"module {module!r} calls scaled_dot_product_attention with head_dim={d} coming from two different "
                "base head dims, so one factor cannot serve both. Fix: pass attention='off' and scale by hand."
            )
        factors[d] = f
    if owned:
        base = build(factory, table.base_width, meta=True, what="base")
        _scale_attributes(table, rule, owned, (calls, base_calls), (model, base))


def _owns_scaling(model: nn.Module, name: str) -> bool:
    """True when module ``name`` is a Hugging Face attention module that reads its scale from
    ``self.scaling`` (rewritten there, for every attention implementation; see ``_attention``)."""
    try:
        module = model.get_submodule(name) if name else model
    except AttributeError:
        return False
    return _attention.scaling_attribute(module) is not None


def _scale_attributes(table: ScalingTable, rule: Parametrization, owned: set[str],
                      traces: tuple[AttentionTracer, AttentionTracer], models: tuple[nn.Module, nn.Module]) -> None:
    """Record ``scaling:<module> -> {head_dim: factor}`` for modules that own their scale: one
    factor per module, from the head dims of its first attention call and its own ``scaling`` at
    the model's width and at the base width (``models``: the model and a base-width build)."""
    calls, base_calls = traces
    model, base = models
    def first_dims(tracer: AttentionTracer) -> dict[str, int]:
        dims: dict[str, int] = {}
        for module, d in tracer.sdpa + tracer.by_hand:
            if module in owned:
                dims.setdefault(module, d)
        return dims

    dims, base_dims = first_dims(calls), first_dims(base_calls)
    for module in sorted(owned):
        if module not in base_dims:
            raise ShapeInferenceError(
                f"module {module!r} computes attention at width {table.width:g} but not at base width "
                f"{table.base_width:g}. Fix: keep the attention structure fixed across widths."
            )
        d, own = dims[module], _attention.scaling_attribute(model.get_submodule(module))
        own_base = _attention.scaling_attribute(base.get_submodule(module))
        table.attention[f"scaling:{module}"] = {d: rule.scaled_attention_factor(
            d, base_dims[module], table.options["attn_mult"], own or 0.0, own_base or 0.0)}


def _trace_width(
    factory: Callable[..., nn.Module], width: float, example_input: Any, *, real: nn.Module | None
) -> AttentionTracer:
    """Trace the factory's model at ``width`` on the meta device; when its forward reads values
    (``.item()``, ``torch.equal``, ``nonzero``, CPU tensors made in ``forward``), run it for real:
    ``real`` if given (the target model), else a fresh CPU build under a private RNG."""
    try:
        return trace_attention(build(factory, width, meta=True, what="trace"), example_input, meta=True)
    except TraceFailure:
        pass
    real = runnable(factory, width, real)
    try:
        return trace_attention(real, example_input, meta=False)
    except TraceFailure as failure:
        raise ParametrizationError(
            f"hptransfer runs the model once at width {width:g} to find the head dimension of every "
            f"scaled_dot_product_attention call, and that forward failed {failure} "
            f"{user_frame(failure.error)} (first on the meta device, then for real). Fix: pass example_input= "
            "an input the model's forward accepts at every width (a tensor, a tuple of positional args or a dict "
            "of keyword args; token ids rather than width-sized features), or fix the forward there. If the "
            "model's only attention is nn.MultiheadAttention or you scale attention yourself, attention='off' "
            "skips this run (it also turns off hptransfer's nn.MultiheadAttention scaling)."
        ) from failure.error


def _report_by_hand(by_hand: list[tuple[str, int]], table: ScalingTable, rule: Parametrization) -> None:
    """Warn (and note in the table) about attention whose scale hptransfer cannot change."""
    modules = sorted({m for m, _ in by_hand})
    if not modules or (rule.attention_factor(2, 1, table.options["attn_mult"]) == 1.0):
        return  # the rule leaves attention as the model computes it (SP with attn_mult 1)
    dims = sorted({d for _, d in by_hand})
    note = (
        f"attention computed by hand (a matrix product then softmax) in module(s) {', '.join(map(repr, modules[:4]))}"
        f"{' ...' if len(modules) > 4 else ''} (head_dim {', '.join(map(str, dims))}): hptransfer cannot change its "
        f"scale, so it stays at the model's own (usually 1/sqrt(d)) instead of {rule.name}'s, and attention logits "
        "grow with the head dimension. Fix: compute it with torch.nn.functional.scaled_dot_product_attention "
        "(Hugging Face: attn_implementation='sdpa'), or multiply the scores by attn_mult*sqrt(d_base)/d yourself."
    )
    table.notes.append(note)
    warn(note, key=f"attention by hand: {modules} under {rule.name}",  # once per model, not once per width
         breaks_transfer=True)
