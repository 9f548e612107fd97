"""Raw readouts: a parameter held as a bare ``nn.Parameter`` and used as the model's last matmul.

Shapes alone cannot tell ``self.lm_head = nn.Parameter(torch.randn(vocab, width))`` used as
``h @ self.lm_head.T`` from an embedding table of the same shape: both have one width axis and
belong to no module whose convention fixes fan-in and fan-out (``_shapes``). How the forward uses
the tensor does tell: a readout contracts its width axis in a matrix product (fan-in = width,
fan-out fixed: the output role of shared/RULES.md), a table is indexed. One forward (on the meta
device, else for real) under a :class:`torch.overrides.TorchFunctionMode` follows each such tensor
through transposes and dtype casts to the matrix products and look-ups that consume it.

A parameter used only as a readout, in a model that has no other readout, gets the output role
(read out in place: TP5 Table 3 form, see :class:`~hptransfer.parametrization.MuP`). Anything
less clear (no ``example_input``, a tensor also indexed like a tied embedding, several such
tensors) is warned, naming the parameter and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..errors import warn
from ._shapes import Usage, build, match_any, runnable
from ._table import ParamInfo
from ._trace import run_under

__all__ = ["raw_candidates", "assign_raw_readouts", "returned_readout"]

_MATMULS = {torch.matmul, Tensor.matmul, Tensor.__matmul__, Tensor.__rmatmul__, torch.mm, Tensor.mm}
_LOOKUPS = {F.embedding, Tensor.__getitem__, torch.index_select, Tensor.index_select, torch.take_along_dim}
_SAME_AXES = {Tensor.float, Tensor.half, Tensor.bfloat16, Tensor.double, Tensor.to, Tensor.type_as, Tensor.contiguous,
              Tensor.clone, Tensor.detach}


def raw_candidates(params: Mapping[str, ParamInfo], usages: Mapping[str, tuple[Any, list[Usage]]]) -> list[str]:
    """Parameters that could be a readout held as a raw tensor: 2-D, one width axis, registered on
    no module whose convention fixes its fan-in (so shape inference called them input-like)."""
    return [n for n, info in params.items()
            if info.role == "input" and len(info.shape) == 2 and len(info.width_axes) == 1
            and not any(u.known for u in usages[n][1])]


class _UseTracer(TorchFunctionMode):
    """Follows tensors derived from the watched parameters; records ``name -> {"readout", "lookup",
    "project"}`` (``project``: a matrix product that contracts the fixed axis instead)."""

    def __init__(self, watched: dict[int, tuple[str, int, Tensor]]):
        super().__init__()
        self.watched = watched  # id(tensor) -> (parameter name, its width axis in this tensor, the tensor)
        self.uses: dict[str, set[str]] = {}

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        first = self._find(args[0]) if args else None
        if func is F.linear and len(args) > 1:
            self._contract(args[1], 1)
        elif func in _MATMULS and len(args) > 1:
            self._contract(args[1], 0)
            self._contract(args[0], 1)
        elif func in _LOOKUPS:
            for a in args[:2]:
                if (hit := self._find(a)) is not None:
                    self.uses.setdefault(hit[0], set()).add("lookup")
        elif first is not None and isinstance(out, Tensor) and out.ndim == 2:
            self._follow(func, args, first, out)
        return out

    def _find(self, t: Any) -> tuple[str, int, Tensor] | None:
        return self.watched.get(id(t)) if isinstance(t, Tensor) and t.ndim == 2 else None

    def _contract(self, t: Any, axis: int) -> None:
        if (hit := self._find(t)) is not None:
            self.uses.setdefault(hit[0], set()).add("readout" if hit[1] == axis else "project")

    def _follow(self, func: Callable, args: tuple, first: tuple[str, int, Tensor], out: Tensor) -> None:
        name, axis, _ = first
        owner = getattr(func, "__self__", None)
        if func in (Tensor.t, torch.t) or owner in (torch._C.TensorBase.T, torch._C.TensorBase.mT) or (
                func in (Tensor.transpose, torch.transpose) and len(args) == 3):
            self.watched[id(out)] = (name, 1 - axis, out)
        elif func in _SAME_AXES:
            self.watched[id(out)] = (name, axis, out)


def _trace_uses(model: nn.Module, axes: Mapping[str, int], example_input: Any, *, meta: bool) -> dict[str, set[str]]:
    """Run the forward once and return how it used each parameter of ``axes`` (name -> width axis)."""
    params = dict(model.named_parameters())
    tracer = _UseTracer({id(params[n]): (n, axis, params[n]) for n, axis in axes.items()})
    run_under(model, tracer, example_input, meta=meta)
    return tracer.uses


def assign_raw_readouts(params: dict[str, ParamInfo], usages: Mapping[str, tuple[Any, list[Usage]]],
                        factory: Callable[..., nn.Module], model: nn.Module, width: float, options: Mapping[str, Any],
                        example_input: Any) -> bool:
    """Give a raw-tensor readout the output role (in place), or warn when it cannot be decided.
    Returns True when it warned about the model's readout (so no second warning is needed).

    When the model already has its readout (an output-role parameter, or one the user named), a raw
    tensor the forward multiplies by along its width axis maps the width to a fixed size inside the
    network: a mixture-of-experts router (Hugging Face Mixtral's ``gate.weight``, experts x hidden,
    applied with ``F.linear``) or a bottleneck. TP5 (arXiv:2203.03466, Table 3) gives every such
    "output weight" the output rules, so it gets the output role in place too (init x 1/sqrt(m),
    Adam LR x 1/m), with a note; left input-like, a router's logits grew as width^0.97 by the
    fourth step of the coordinate check. Skipped for candidates whose role the user pinned.
    """
    candidates = [n for n in raw_candidates(params, usages) if not match_any(n, list(options["roles"]))]
    if not candidates:
        return False
    if options["readout"] is not None or any(i.role == "output" for i in params.values()):
        _inner_outputs(params, candidates, factory, model, width, example_input)
        return False
    fix = (f"Fix: name it, parametrize(..., readout={candidates[-1]!r}) (read out in place: init x 1/sqrt(m), "
           f"Adam LR x 1/m), or pin roles={{{candidates[-1]!r}: 'input'}} if it is a table")
    if example_input is None:
        _warn(f"parameter(s) {candidates} are raw tensors with one width axis (shape "
              f"{list(params[candidates[-1]].shape)}); without example_input= hptransfer cannot see whether the "
              f"forward indexes them (a table: input role, as given) or multiplies by them as the readout. {fix}, "
              "or pass example_input= so the forward shows it.")
        return True
    uses = _uses(factory, model, width, {n: params[n].width_axes[0] for n in candidates}, example_input)
    readouts = [n for n in candidates if uses.get(n) == {"readout"}]
    tied = [n for n in candidates if {"readout", "lookup"} <= uses.get(n, set())]
    if tied:
        _warn(f"parameter(s) {tied} are both indexed and multiplied by as a readout (a tied embedding held as a raw "
              "tensor): μP's readout multiplier needs a module to hook. Fix: read out through an nn.Linear whose "
              "weight is the embedding (`head.weight = embed.weight`).", breaks_transfer=True)
    if len(readouts) == 1:
        (name,) = readouts
        info = params[name]
        params[name] = replace(info, role="output", fan_in_mult=info.width_mult, fan_out_mult=1.0)
    elif len(readouts) > 1:
        _warn(f"several raw tensors are used as readouts (their width axis is contracted): {readouts}. {fix}.",
              breaks_transfer=True)
    return bool(tied) or len(readouts) > 1


def _inner_outputs(params: dict[str, ParamInfo], candidates: list[str], factory: Callable[..., nn.Module],
                   model: nn.Module, width: float, example_input: Any) -> None:
    """Raw tensors used only as width -> fixed linear maps in a model that has its readout: the output
    role in place (see :func:`assign_raw_readouts`); nothing without ``example_input`` (shapes cannot
    tell such a map from a table of the same shape)."""
    if example_input is None:
        _warn(f"parameter(s) {candidates} are raw tensors with one width axis in a model that has its readout; "
              "without example_input= hptransfer cannot see whether the forward multiplies by them along the width "
              "(a router or bottleneck: an output weight, init x 1/sqrt(m) and Adam LR x 1/m) or indexes them (a "
              f"table: input role, as given). Fix: pass example_input=, or pin roles={{{candidates[0]!r}: 'output'}}.")
        return
    uses = _uses(factory, model, width, {n: params[n].width_axes[0] for n in candidates}, example_input)
    for name in candidates:
        if uses.get(name) == {"readout"}:
            info = params[name]
            params[name] = replace(info, role="output", fan_in_mult=info.width_mult, fan_out_mult=1.0)


class _Pass(TorchFunctionMode):
    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return func(*args, **(kwargs or {}))


def _leaves(x: Any) -> list[Tensor]:
    """The tensors in a model output: a tensor, tuples/lists, mappings (a ``ModelOutput``)."""
    if isinstance(x, Tensor):
        return [x]
    items = x.values() if isinstance(x, Mapping) else x if isinstance(x, (tuple, list)) else ()
    return [t for item in items for t in _leaves(item)]


def _returned(model: nn.Module, modules: list[str], example_input: Any, *, meta: bool) -> list[str]:
    seen: dict[str, Any] = {}
    out: dict[str, Any] = {}
    handles = [model.get_submodule(m).register_forward_hook(lambda mod, a, o, m=m: seen.setdefault(m, o))
               for m in modules]
    handles.append(model.register_forward_hook(lambda mod, a, o: out.setdefault("", o)))
    try:
        run_under(model, _Pass(), example_input, meta=meta)
    finally:
        for h in handles:
            h.remove()
    returned = {id(t) for t in _leaves(out.get(""))}
    return [m for m in modules if isinstance(seen.get(m), Tensor) and id(seen[m]) in returned]


def returned_readout(factory: Callable[..., nn.Module], model: nn.Module, width: float, modules: list[str],
                     example_input: Any) -> str | None:
    """Of ``modules`` (each applying a width -> fixed weight), the one whose output the model
    returns as is (an LM's ``lm_head``: its logits), when exactly one does; else None. Run on the
    meta device, else for real; None when the forward fails (the attention trace reports that).
    Without ``example_input``: the module a Hugging Face model names as its output embeddings."""
    if example_input is None:
        named = getattr(model, "get_output_embeddings", lambda: None)()
        return next((m for m in modules if named is not None and model.get_submodule(m) is named), None)
    try:
        found = _returned(build(factory, width, meta=True, what="trace"), modules, example_input, meta=True)
    except Exception:  # a forward that reads values: for real below
        try:
            found = _returned(runnable(factory, width, model), modules, example_input, meta=False)
        except Exception:
            return None
    return found[0] if len(found) == 1 else None


def _uses(factory: Callable[..., nn.Module], model: nn.Module, width: float, axes: Mapping[str, int],
          example_input: Any) -> dict[str, set[str]]:
    """The uses seen on the meta device; for a forward that reads values, on ``model`` for real."""
    try:
        return _trace_uses(build(factory, width, meta=True, what="trace"), axes, example_input, meta=True)
    except Exception:  # the user's forward on the meta device (e.g. .item()): run it for real
        pass
    try:
        return _trace_uses(runnable(factory, width, model), axes, example_input, meta=False)
    except Exception as exc:  # the attention trace reports a failing forward with its fix; here, just warn
        _warn(f"the forward failed while hptransfer looked for a readout held as a raw tensor among {list(axes)} "
              f"({type(exc).__name__}: {exc}); they keep the input role. Fix: pass readout= naming it.")
        return {}


def _warn(message: str, breaks_transfer: bool = False) -> None:
    warn(message, breaks_transfer=breaks_transfer)
