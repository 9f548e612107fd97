"""Recording every module's output on a probe batch (for the coordinate check)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import CoordCheckError, ParametrizationError
from ..parametrization import scaling_table
from ..parametrization._trace import AttentionTracer, module_stack

#: Name under which the root module's (the whole model's) output is recorded.
ROOT_NAME = "(model)"
#: Suffix of the entry holding an attention module's softmax scale times its head dim
#: (``"blocks.0.attn[attn scale x d]"``): constant across widths under 1/d attention (μP),
#: growing like sqrt(d) when attention stayed at 1/sqrt(d).
LOGITS_SUFFIX = "[attn scale x d]"

__all__ = ["probe", "check_start", "stats", "as_args", "to_device", "ROOT_NAME", "LOGITS_SUFFIX"]


@torch.no_grad()
def probe(model: nn.Module, probe_input: Any) -> dict[str, Tensor]:
    """Run ``probe_input`` through ``model`` with a forward hook on every module; return each
    module call's first floating tensor output (detached float32 copies), keyed by name.

    Each attention call's softmax scale times its head dimension is recorded too, as a scalar
    ``"<module>[attn scale x d]"``: μP's 1/d attention (TP5, arXiv:2203.03466, Sec. 4) keeps it
    constant as width grows, attention left at 1/sqrt(d) (written by hand, so not rewritten) makes
    it grow like sqrt(d), which module outputs after a softmax hide.
    """
    outs: dict[str, Tensor] = {}
    calls: dict[str, int] = {}
    # A module whose output hptransfer multiplies to hold a width-dependent constant of the forward
    # at its base value is measured as its own output (before that multiplier): the product,
    # which later modules see, is width-stable, and so is the module itself. So is any enclosing
    # module that returns that very tensor (T5's decoder, whose last dropout is held).
    try:
        scalings = scaling_table(model).module_scalings
    except ParametrizationError:  # a model hptransfer did not parametrize: nothing held
        scalings = []
    own = {m.module or ROOT_NAME: m.multiplier for m in scalings if m.kind == "constant"}
    held: dict[int, tuple[Tensor, float]] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            t = _first_tensor(output)
            if t is None:
                return
            n = calls.get(name, 0) + 1
            calls[name] = n
            # A module used several times per forward (a shared activation) gets one entry per
            # call: its calls see different inputs and must not be averaged together.
            mult = own.get(name)
            if mult is not None:
                held[id(t)] = (t, mult)
            else:
                same = held.get(id(t))
                mult = same[1] if same is not None and same[0] is t else 1.0
            outs[name if n == 1 else f"{name}#{n}"] = t.detach().float() / mult

        return hook

    # torch.nn.utils.parametrize modules (weight_norm, spectral_norm, orthogonal) output a weight, not
    # an activation: μP scales its entries like the weight's (1/sqrt(m), updates 1/m), which the
    # activation thresholds would call vanishing. The layer that uses the weight is measured.
    weights = {id(sub) for m in model.modules() if isinstance(m, parametrize.ParametrizationList)
               for sub in m.modules()}
    handles = [m.register_forward_hook(hook_for(name or ROOT_NAME)) for name, m in model.named_modules()
               if id(m) not in weights]
    stack, stack_handles = module_stack(model)
    tracer = AttentionTracer(stack, measure_scale=True, modules=dict(model.named_modules()))
    try:
        with tracer:
            model(*as_args(probe_input))
    finally:
        for h in handles + stack_handles:
            h.remove()
    for name, scales in tracer.scales.items():
        for i, (d, scale) in enumerate(scales):
            key = f"{name or ROOT_NAME}{LOGITS_SUFFIX}"
            outs[key if i == 0 else f"{key}#{i + 1}"] = torch.tensor(abs(scale) * d)
    return outs


def stats(h: Tensor, ref: Tensor | None, mask_frac: float | None) -> tuple[float, float, float]:
    """``(mean |h|, mean |h - ref|, non-finite fraction)`` of one module output.

    Entries that are ±inf by design (an attention mask of -inf, masked logits) are left out of both
    means, as long as the same entries are non-finite at step 0 (``ref``) and the same fraction is at
    the smallest width (``mask_frac``; ``None`` there). Anything else non-finite, such as a blow-up,
    an overflow at a larger width or any nan, makes both statistics ``inf``: it fails the check.
    NaN means not measured: an empty output (both), or a shape unlike step 0's (the update; routed
    tokens, as in an MoE expert, change which rows there are).
    """
    if h.numel() == 0:  # e.g. an MoE expert no token was routed to: nothing measured, not a failure
        return float("nan"), float("nan"), 0.0
    finite = torch.isfinite(h)
    # From integer counts: the same share of a larger output compares equal (no float-sum rounding).
    frac = (h.numel() - int(finite.sum())) / h.numel()
    if frac == 0.0:
        act = h.abs().mean().item()
        upd = (h - ref).abs().mean().item() if ref is not None and ref.shape == h.shape else float("nan")
        if ref is not None and ref.shape == h.shape and not bool(torch.isfinite(ref).all()):
            upd = float("inf")  # non-finite at step 0, finite now: not a fixed mask
        return act, upd, frac
    masked = not bool(torch.isnan(h).any()) and (mask_frac is None or frac == mask_frac)
    if masked and ref is not None:
        masked = ref.shape == h.shape and bool((torch.isfinite(ref) == finite).all())
    if not masked:
        return float("inf"), float("inf"), frac
    act = h[finite].abs().mean().item() if bool(finite.any()) else 0.0
    upd = (h - ref)[finite].abs().mean().item() if ref is not None and bool(finite.any()) else float("nan")
    return act, upd, frac


def check_start(outs: dict[str, Tensor], width: float, probe_input: Any) -> None:
    """Refuse a probe that measures nothing: an empty model output (or only empty module outputs),
    or a model output with nan before any update at the smallest width. Either is a broken probe
    batch or model, not a width effect, and would otherwise show as an ``inf`` slope on every module.
    (An ``inf`` alone is allowed: masks and masked logits hold -inf by design.)"""
    shapes = _shapes(probe_input)
    root = outs.get(ROOT_NAME)
    # An inner module may be empty by design (an MoE expert no token was routed to): it is left
    # unmeasured. An empty model output, or nothing but empty outputs, means an empty probe batch.
    empty = next((n for n, h in outs.items() if h.numel() == 0 and (n == ROOT_NAME or root is None)), None)
    if empty is None and outs and all(h.numel() == 0 for h in outs.values()):
        empty = next(iter(outs))
    if empty is not None:
        raise CoordCheckError(
            f"module {empty!r} returned an empty output (shape {tuple(outs[empty].shape)}) on the probe input "
            f"(shapes {shapes}): there is nothing to measure. Fix: give a probe batch with samples in it "
            "(probe_input=..., or batch_fn(step) returning a full (input, target) batch for step 0).")
    if root is not None and bool(torch.isnan(root).any()):
        raise CoordCheckError(
            f"the model's output has nan values at width {width:g} before any training step, on the probe "
            f"input (shapes {shapes}): the model or the probe is broken at the smallest width, so no slope "
            "can be measured. Fix: run the model once at that width on the probe input and find where the "
            "nan first appears.")


def _shapes(x: Any) -> Any:
    if isinstance(x, Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)):
        return [_shapes(i) for i in x]
    if isinstance(x, dict):
        return {k: _shapes(v) for k, v in x.items()}
    return type(x).__name__


def _first_tensor(output: Any) -> Tensor | None:
    """The first floating-point tensor in a module output (tensor, tuple/list or dict)."""
    if isinstance(output, Tensor):
        return output if output.is_floating_point() or output.is_complex() else None
    if isinstance(output, (tuple, list)):
        items: Iterable[Any] = output
    elif isinstance(output, dict):
        items = output.values()
    else:
        return None
    for item in items:
        t = _first_tensor(item)
        if t is not None:
            return t
    return None


def as_args(x: Any) -> tuple:
    """A batch input as positional args: tuples are unpacked, anything else is one argument."""
    return x if isinstance(x, tuple) else (x,)


def to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(i, device) for i in x)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x
