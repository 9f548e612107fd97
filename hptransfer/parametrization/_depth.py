"""Depth: find the block stack and each block's residual branches, and scale the branches.

Depth-μP (Yang et al. 2023, Tensor Programs VI, arXiv:2310.02244; Bordelon et al. 2023,
arXiv:2309.16620) and CompleteP (Dey et al. 2025, arXiv:2505.01618) write a residual block as
``h_{l+1} = h_l + (L_base / L)^alpha * F_l(h_l)`` (alpha = 1/2 and 1). Nothing in the model's source
changes; what this module assumes, and checks:

1. **The stack.** The factory takes ``(width, depth)`` and ``depth`` is the number of repeated
   blocks. Built at two depths on the meta device, the stack is every ``nn.ModuleList`` or
   ``nn.Sequential`` that grows by one entry per unit of depth (the outermost one when they nest). A
   model where none does raises :class:`~hptransfer.errors.DepthInferenceError`.
2. **The branches.** Each block adds the outputs of some of its submodules to its input (the
   residual stream): ``x = x + attn(ln1(x)); x = x + mlp(ln2(x))``. One block at a time runs on
   the meta device with the model's example input; a torch-function mode follows the stream
   through additions and names the (outermost) submodule whose output is added. That submodule's
   output is multiplied by ``(L_base/L)^alpha`` with a forward hook: each branch is scaled, never
   the block's output (scaling ``x + F(x)`` would scale the stream too). A block that adds to the
   stream a tensor no submodule returned (a functional branch), or adds nothing, raises
   :class:`~hptransfer.errors.DepthInferenceError`: pass ``branches=`` glob patterns
   (``["*.attn.c_proj", "*.mlp.c_proj"]``) to name them instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Sized
from dataclasses import replace
from typing import Any, cast

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import DepthInferenceError
from ._shapes import build, match_any
from ._table import ModuleScaling, ScalingTable
from ._trace import to_meta

__all__ = ["find_stacks", "find_branches", "block_of", "AtDepth", "setup_depth"]

_ADDS = {torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__, torch.Tensor.__radd__,
         torch.Tensor.__iadd__}


def find_stacks(factory: Callable[[Any, int], nn.Module], width: float, base_depth: int) -> list[str]:
    """Module paths of the block stacks: lists that grow by one entry per unit of depth.

    Builds ``factory(width, base_depth)`` and ``factory(width, base_depth + 1)`` on the meta device.
    """
    depths = (base_depth, base_depth + 1)
    lengths = []
    for d in depths:
        model = build(lambda w, d=d: factory(w, d), width, meta=True, what=f"depth {d}")
        lengths.append({n: len(m) for n, m in model.named_modules() if isinstance(m, (nn.ModuleList, nn.Sequential))})
    # "follows depth": one more block per unit of depth (len = depth + c, c >= 0: extra layers kept in the list)
    found = [n for n, k in lengths[0].items() if n in lengths[1] and lengths[1][n] - k == 1 and k >= depths[0]]
    stacks = [n for n in found if not any(n != o and (o == "" or n.startswith(o + ".")) for o in found)]
    if not stacks:
        seen = {n or "(root)": lengths[0][n] for n in lengths[0]}
        raise DepthInferenceError(
            f"no module list of the model grows by one entry per unit of the depth argument (built at depths {depths}; "
            f"lists and their lengths at depth {depths[0]}: {seen or 'none'}). Fix: make the factory's depth "
            "argument set the number of blocks of one nn.ModuleList/nn.Sequential, or use "
            "parametrization 'mup' (width only)."
        )
    return stacks


def block_of(name: str, stacks: Sequence[str]) -> str | None:
    """The block (``"<stack>.<i>"``) that holds parameter or module ``name``, or ``None``."""
    for stack in stacks:
        prefix = f"{stack}." if stack else ""
        if name.startswith(prefix):
            index = name[len(prefix):].split(".", 1)[0]
            if index.isdigit():
                return prefix + index
    return None


def find_branches(model: nn.Module, stacks: Sequence[str], example_input: Any,
                  patterns: Sequence[str] | None = None) -> list[str]:
    """Module paths of every residual branch of every block, in model order.

    With ``patterns`` the branches are the block submodules whose paths match them (each block must
    match at least one); otherwise they are traced on ``model`` (a meta-device build) with
    ``example_input``.
    """
    blocks = [f"{s}.{i}" if s else str(i) for s in stacks for i in range(len(cast(Sized, model.get_submodule(s))))]
    if patterns:
        out = [n for n, _ in model.named_modules()
               if block_of(n, stacks) and n not in blocks and match_any(n, patterns)]
        missing = [b for b in blocks if not any(block_of(n, stacks) == b for n in out)]
        if missing:
            raise DepthInferenceError(
                f"branches={list(patterns)} match no submodule of block(s) {missing[:3]}. Fix: give glob patterns "
                f"of each block's branch modules, e.g. '{blocks[0]}.*' names like '*.attn.o_proj'."
            )
        return out
    if example_input is None:
        raise DepthInferenceError(
            "depth scaling must trace the blocks to find their residual branches, and no example_input was "
            "given. Fix: pass example_input= to parametrize(), or name the branches with branches=[...]."
        )
    return _trace(model, blocks, example_input)


class _StreamTracer(TorchFunctionMode):
    """Follows one block's residual stream through additions and records which submodule output is added."""

    def __init__(self) -> None:
        super().__init__()
        self.block: str | None = None
        self.stream: dict[int, torch.Tensor] = {}
        self.outputs: dict[int, tuple[str, torch.Tensor]] = {}
        self.found: dict[str, list[str]] = {}
        self.unsound: dict[str, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.block is None or func not in _ADDS or len(args) < 2 or not isinstance(out, torch.Tensor):
            return out
        a, b = args[0], args[1]
        for s, other in ((a, b), (b, a)):
            if isinstance(s, torch.Tensor) and id(s) in self.stream:
                self.stream[id(out)] = out  # the stream goes on through this addition
                if isinstance(other, torch.Tensor) and id(other) not in self.stream:
                    hit = self.outputs.get(id(other))
                    if hit is None:
                        self.unsound[self.block] = self.unsound.get(self.block, 0) + 1
                    elif hit[0] not in self.found.setdefault(self.block, []):
                        self.found[self.block].append(hit[0])
                break
        return out


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def _hooks(model: nn.Module, blocks: list[str], tracer: _StreamTracer) -> list[Any]:
    handles = []

    def enter(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = _first_tensor(args) if args else _first_tensor(kwargs.get("hidden_states", next(iter(kwargs.values()),
                                                                                                 None)))
            tracer.block, tracer.stream, tracer.outputs = name, ({id(x): x} if x is not None else {}), {}
        return hook

    def leave(module: nn.Module, args: tuple, out: Any) -> None:
        tracer.block = None

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, out: Any) -> None:
            t = _first_tensor(out)
            if tracer.block is not None and t is not None:
                tracer.outputs[id(t)] = (name, t)  # outer modules run their hook later and win
        return hook

    for block in blocks:
        module = model.get_submodule(block)
        handles.append(module.register_forward_pre_hook(enter(block), with_kwargs=True))
        handles.append(module.register_forward_hook(leave, always_call=True))
        for sub, child in module.named_modules():
            if sub:
                handles.append(child.register_forward_hook(record(f"{block}.{sub}")))
    return handles


def _trace(model: nn.Module, blocks: list[str], example_input: Any) -> list[str]:
    tracer = _StreamTracer()
    handles = _hooks(model, blocks, tracer)
    args, kwargs = ((), example_input) if isinstance(example_input, dict) else (
        (example_input if isinstance(example_input, tuple) else (example_input,)), {})
    try:
        with torch.no_grad(), tracer:
            model(*to_meta(args), **to_meta(kwargs))
    except Exception as exc:  # the user's model on meta inputs: report what failed
        raise DepthInferenceError(
            f"tracing the blocks on the meta device with example_input failed ({type(exc).__name__}: {exc}). "
            "Fix: pass an example_input the model accepts, or name the branches with branches=[...]."
        ) from exc
    finally:
        for h in handles:
            h.remove()
    bad = [b for b in blocks if b in tracer.unsound or not tracer.found.get(b)]
    if bad:
        b = bad[0]
        why = (f"adds to its residual stream {tracer.unsound[b]} tensor(s) that no submodule returned (a functional "
               "branch, which a hook cannot scale)" if b in tracer.unsound else
               "adds no submodule output to its input (not a residual block, or it was never called)")
        raise DepthInferenceError(
            f"block {b!r} {why}, so no sound residual branch can be scaled. Fix: name the branch modules with "
            "branches=['*.attn.c_proj', ...], or use parametrization 'mup' (no depth scaling)."
        )
    return [n for b in blocks for n in tracer.found[b]]


class AtDepth:
    """A picklable ``width -> nn.Module`` calling ``factory(width, depth)``."""

    def __init__(self, factory: Callable[[Any, int], nn.Module], depth: int):
        self.factory, self.depth = factory, depth

    def __call__(self, width: Any) -> nn.Module:
        return self.factory(width, self.depth)

    def cache_key(self) -> Any:
        """What it builds (``_init_law.factory_key``): the factory's key and the depth."""
        from ._init_law import factory_key

        inner = factory_key(self.factory)
        return None if inner is None else ("AtDepth", inner, self.depth)


def setup_depth(table: ScalingTable, rule: Any, factory: Callable[[Any, int], nn.Module], base: nn.Module, *,
                depth: int, base_depth: int, branches: Sequence[str] | None, example_input: Any) -> None:
    """Record the depth axis in ``table``; under a depth-scaled rule, find stacks and branches, set each
    block parameter's ``depth_mult`` and add a forward multiplier ``(base_depth/depth)^alpha`` per branch.

    ``base`` is the model at the base width and the target depth on the meta device (traced, not run).
    """
    alpha = rule.depth_alpha
    info: dict[str, Any] = {"depth": depth, "base_depth": base_depth, "alpha": alpha, "stacks": [], "branches": []}
    if alpha is not None:
        stacks = find_stacks(factory, table.base_width, base_depth)
        found = find_branches(base, stacks, example_input, branches)
        m = depth / base_depth
        for name, p in list(table.params.items()):
            if block_of(name, stacks) is not None:
                table.params[name] = replace(p, depth_mult=m)
        mult = rule.branch_multiplier(m)
        if mult != 1.0:
            reason = f"residual branch x (base_depth/depth)^{alpha:g} = ({base_depth}/{depth})^{alpha:g}"
            table.module_scalings.extend(ModuleScaling(b, "output", mult, reason) for b in found)
        info.update(stacks=stacks, branches=found)
    table.depth = info
