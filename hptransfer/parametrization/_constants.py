"""Width-dependent constants in the forward pass: found by tracing, neutralised by hook.

Models often multiply a module's output by a constant computed from the width: the PyTorch
``nn.Transformer`` tutorial's ``self.embedding(src) * math.sqrt(self.d_model)``, Gemma's
``embed_scale = hidden_size ** 0.5``, fairseq's and Marian's ``embed_scale``. μP's rules are stated
for each layer's own output, so such a constant makes that output grow (or shrink) with width
however the layer is initialised and trained: measured on the tutorial model under μP, the
embedding sum's coordinates grow as width^0.22 at init and its updates as width^0.5, and its
coordinate check fails; with the constant held at its base-width value it passes.

A width-scaled rule therefore holds every such constant at its base-width value
(:meth:`~hptransfer.parametrization.Parametrization.constant_factor`): a forward hook multiplies the
module's output by ``c(base_width) / c(width)``, so the product is what it is at the base width,
where the model is the user's own. A fixed constant multiplier is a reparametrization that μP's
scaling leaves alone (Yang & Hu, arXiv:2011.14522, abc-parametrizations), so the rest of the rules
apply unchanged. SP leaves the model as written.

What is traced: a multiplication (or division) of a tensor by a Python number or a one-element
tensor, where the tensor is a module's output (the constant then belongs to that module), or where
the product becomes the output of the module that computed it (Gemma's scaled embedding). The
model runs at the base width and at the target width on the meta device and the constants are
compared; where one differs (or is a tensor, whose value the meta device does not hold), both
widths run again for real, and a constant is held only when the tensor it multiplies is closer to
width-stable than the product: ``F.normalize(x) * dim ** 0.5`` (x-transformers' SimpleRMSNorm)
compensates a unit vector's 1/sqrt(dim) entries and is left alone. Constants inside attention
modules (anything that calls softmax or ``scaled_dot_product_attention``) are left to the attention
rewrite; constants on tensors that are not a module's output (``(q @ k.T) * scale``) are not touched.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ._rules import Parametrization
from ._shapes import build, runnable
from ._table import ModuleScaling, ScalingTable
from ._trace import module_stack, run_under

__all__ = ["ConstantTracer", "trace_constants", "scale_width_constants", "first_output"]

_MULS = {torch.mul, Tensor.mul, Tensor.mul_, Tensor.__mul__, Tensor.__rmul__, Tensor.__imul__, operator.mul}
_DIVS = {torch.div, Tensor.div, Tensor.div_, Tensor.__truediv__, Tensor.__itruediv__, torch.true_divide}
_ATTENTION = {F.scaled_dot_product_attention, F.softmax, torch.softmax, Tensor.softmax, F.log_softmax}
_UNKNOWN = math.nan  # a constant held in a meta tensor: its value is not known


@dataclass
class _Op:
    where: str  # the innermost module running the multiplication
    factor: float  # what the tensor was multiplied by (NaN: a meta tensor)
    rms: float  # root-mean-square of the tensor multiplied (NaN on the meta device)
    owner: str | None = None  # the module the constant belongs to (None: not a module's output)
    inside: bool = False  # the module's own last step (its output includes the constant)


class ConstantTracer(TorchFunctionMode):
    """Records scalar multiplications of module outputs during one forward (module docstring).

    ``found()`` gives ``{(module, inside): [op, ...]}`` in call order (``inside``: the module
    multiplies its own output; else its caller multiplies it); ``attention`` the modules that
    computed attention; ``calls`` how often each module ran.
    """

    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.ops: list[_Op] = []
        self.attention: set[str] = set()
        self._outputs: dict[int, tuple[str, Tensor]] = {}  # id -> (module, tensor kept alive: ids stay unique)
        self.calls: dict[str, int] = {}
        self._products: dict[int, tuple[_Op, Tensor]] = {}

    def output_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
            out = first_output(output)
            if out is None:
                return
            made = self._products.get(id(out))
            if made is not None and made[1] is out and made[0].owner is None and made[0].where == name:
                made[0].owner, made[0].inside = name, True  # the module's last step: its own constant
            self._outputs[id(out)] = (name, out)
        return hook

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        where = self.stack[-1]
        if func in _ATTENTION:
            self.attention.add(where)
        out = func(*args, **kwargs)
        if (func in _MULS or func in _DIVS) and len(args) == 2 and not kwargs and isinstance(out, Tensor):
            self._record(func, where, args, out)
        return out

    def _record(self, func: Callable, where: str, args: tuple, out: Tensor) -> None:
        a, b = args
        factor: float | None
        if func in _DIVS:
            value = _scalar(b)
            if not isinstance(a, Tensor) or not value:
                return  # scalar / tensor, tensor / tensor, or / 0: not a constant multiplier
            tensor, factor = a, 1.0 / value
        else:
            tensor, scalar = (a, b) if isinstance(a, Tensor) and _scalar(b) is not None else (b, a)
            if not isinstance(tensor, Tensor):
                return
            factor = _scalar(scalar)
        if factor is None or tensor.numel() <= 1:
            return
        found = self._outputs.get(id(tensor))
        rms = math.nan if tensor.is_meta else float(tensor.detach().float().pow(2).mean().sqrt())
        op = _Op(where, factor, rms, found[0] if found is not None and found[1] is tensor else None)
        self.ops.append(op)
        self._products[id(out)] = (op, out)

    def found(self) -> dict[tuple[str, bool], list[_Op]]:
        """The multiplications by owner, outside attention modules."""
        out: dict[tuple[str, bool], list[_Op]] = {}
        for op in self.ops:
            if op.owner is not None and op.owner not in self.attention and op.where not in self.attention:
                out.setdefault((op.owner, op.inside), []).append(op)
        return out


def first_output(output: Any) -> Tensor | None:
    """The tensor a module hands on: the output itself, the first item of a tuple (Hugging Face
    attention's ``(hidden, weights)``) or the first value of a mapping (a ``ModelOutput``'s
    ``last_hidden_state``) -- what an ``"output"`` module scaling multiplies."""
    if isinstance(output, tuple) and output:
        output = output[0]
    elif isinstance(output, Mapping) and output:
        output = next(iter(output.values()))
    return output if isinstance(output, Tensor) else None


def _scalar(x: Any) -> float | None:
    """The value of a Python number or one-element tensor (NaN on the meta device); else None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, Tensor) and x.numel() == 1 and x.dtype.is_floating_point:
        return _UNKNOWN if x.is_meta else float(x.detach().reshape(()))
    return None


def trace_constants(model: nn.Module, example_input: Any, *, meta: bool) -> ConstantTracer:
    """Run ``model`` once on ``example_input`` (see :func:`hptransfer.parametrization._trace.run_under`)
    and return what :class:`ConstantTracer` saw. Raises whatever the forward raises."""
    stack, handles = module_stack(model)
    tracer = ConstantTracer(stack)
    handles += [m.register_forward_hook(tracer.output_hook(n)) for n, m in model.named_modules()]
    try:
        run_under(model, tracer, example_input, meta=meta)
    finally:
        for h in handles:
            h.remove()
    return tracer


def _trace_at(factory: Callable[..., nn.Module], width: float, example_input: Any, *,
              real: nn.Module | None, meta: bool) -> ConstantTracer | None:
    """The forward at ``width`` traced on the meta device (``meta``) or for real (``real``, else a
    fresh build under a private RNG); None when it fails (a data-dependent forward on meta; for real,
    the attention trace runs the same forward and reports the failure with its fix)."""
    try:
        if meta:
            return trace_constants(build(factory, width, meta=True, what="trace"), example_input, meta=True)
        return trace_constants(runnable(factory, width, real), example_input, meta=False)
    except Exception:
        return None


def _width_dependent(here: ConstantTracer, base: ConstantTracer) -> dict[tuple[str, bool], tuple[float, float]]:
    """``{(module, inside): (c, c0)}``: the product of the constants on that module's output here and
    at the base width, where they differ (NaN where the meta device holds the value)."""
    out = {}
    found, found0 = here.found(), base.found()
    for key in sorted(found.keys() & found0.keys()):
        if len(found[key]) != len(found0[key]):
            continue  # the forward differs between widths: nothing to pair
        c, c0 = math.prod(op.factor for op in found[key]), math.prod(op.factor for op in found0[key])
        if math.isnan(c) or math.isnan(c0) or (c and c0 and math.isfinite(c * c0)
                                               and not math.isclose(c, c0, rel_tol=1e-6)):
            out[key] = (c, c0)
    return out


def scale_width_constants(model: nn.Module, table: ScalingTable, rule: Parametrization,
                          factory: Callable[..., nn.Module], example_input: Any) -> None:
    """Record an output multiplier (``table.module_scalings``) for every module whose output the
    forward multiplies by a constant that differs between the base width and ``table.width``, as
    ``rule.constant_factor`` says (μP: back to the base width's constant), and a note naming it.

    Only constants that make the product scale with width are held: one that compensates the
    tensor it multiplies (``F.normalize(x) * sqrt(d)``, a norm written by hand, whose input shrinks as
    1/sqrt(d)) leaves the product width-stable and is left alone. Which is which is measured: the
    tensor's RMS at init, here and at the base width, for real (meta tensors hold no values).
    """
    if table.width == table.base_width or rule.constant_factor(2.0) == 1.0:
        return
    meta = [_trace_at(factory, w, example_input, real=None, meta=True) for w in (table.width, table.base_width)]
    if meta[0] is not None and meta[1] is not None and not _width_dependent(meta[0], meta[1]):
        return  # the common case: nothing to hold, and no real forward needed
    here = _trace_at(factory, table.width, example_input, real=model, meta=False)
    base = _trace_at(factory, table.base_width, example_input, real=None, meta=False)
    if here is None or base is None:
        table.notes.append(
            "the forward failed on the example input, so width-dependent constants in it (embedding x sqrt(d)) "
            "were not looked for. Fix: pass an example_input= the model accepts at every width.")
        return
    found, found0 = here.found(), base.found()
    for (module, inside), (c, c0) in _width_dependent(here, base).items():
        rms, rms0 = found[module, inside][0].rms, found0[module, inside][0].rms
        if not (rms > 0 and rms0 > 0) or abs(math.log(rms / rms0)) >= abs(math.log(rms * c / (rms0 * c0))):
            continue  # the constant compensates the tensor's own width dependence: the product is stable
        _hold(table, rule, module, inside, (c, c0), shared=here.calls.get(module, 1) > 1)


def _hold(table: ScalingTable, rule: Parametrization, module: str, inside: bool, constants: tuple[float, float],
          shared: bool) -> None:
    c, c0 = constants
    mult = rule.constant_factor(c / c0)
    power = math.log(abs(c / c0)) / math.log(table.width / table.base_width)
    what = (f"({c0:.4g} at base width {table.base_width:g}, {c:.4g} at width {table.width:g}, "
            f"~width^{power:.2g})")
    if shared:
        table.notes.append(
            f"module {module or '<root>'!r}: one of its outputs is multiplied in the forward by a width-dependent "
            f"constant {what}, but the module runs more than once per forward, so a hook cannot hold that one "
            "output; left as the model computes it. Fix: compute the constant from the base width in the model's "
            "code, or give the module its own instance for that call.")
        return
    # "constant": the caller multiplies the module's output, which is itself width-stable and is what
    # the coordinate check measures; "output": the module's own output includes the constant.
    table.module_scalings.append(ModuleScaling(
        module, "output" if inside else "constant", mult,
        f"the forward multiplies {module or '<root>'}'s output by a constant that scales as width^{power:.2g} "
        f"({c0:.4g} at base width {table.base_width:g}, {c:.4g} here): held at its base value"))
    table.notes.append(
        f"module {module or '<root>'!r}: its output is multiplied in the forward by a width-dependent constant "
        f"{what}, which would make its coordinates scale with width; {rule.name} holds it at the base width's "
        f"value (output x {mult:.4g}).")
