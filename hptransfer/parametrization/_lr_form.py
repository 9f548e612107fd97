"""``lr_form="multipliers"``: μP's per-parameter Adam LRs moved into forward multipliers and init.

Under Adam, a weight used as ``a * W`` with init std ``s`` and LR ``lr`` trains exactly like one
used as ``(a * c) * W'`` with init ``s / c`` and LR ``lr / c``: the function is the same at every
step, because Adam's update does not depend on the gradient's scale (the abc-symmetry, Yang et al.
2022, Tensor Programs V, arXiv:2203.03466, §J.2.1; u-μP, Blake et al. 2024, arXiv:2407.17465,
parametrizes this way). Choosing ``c`` = the parameter's Adam LR multiplier leaves every parameter
at the one global LR, so an optimizer built with ``model.parameters()`` (a framework's default
AdamW) trains μP.

The factor of each such weight is recorded in its :class:`ParamInfo` (``lr_folded``), the stored
tensor is divided by it, and the module that uses it multiplies it back in its forward:

* ``nn.Linear``, ``nn.Conv*d``, ``nn.ConvTranspose*d`` and Hugging Face's ``Conv1D`` compute
  ``W x + b``; their input is multiplied by ``c_W / c_b`` and their output by ``c_b`` (``c_b``: the
  bias's factor, usually 1, so usually only the input is scaled, as a μP readout is);
* ``nn.Embedding`` and torch's own norm layers are linear in their parameters: their output is
  multiplied by the factor their parameters share.

Any other owner (a raw tensor used by hand, a norm whose output is ``(1 + w) * x``) is refused by
name: its factor cannot be moved into the forward exactly, and the groups form stays the way. So is
a folded weight that the forward reads outside its module's own call (``F.linear(x,
self.qkv.weight, bias)`` in a parent, ``nn.MultiheadAttention``'s ``out_proj``), where the
multiplier cannot reach it: :func:`check_folds` runs the forward once (with ``example_input``, else
at the first call) and watches where each folded tensor is consumed.

Where the forms differ (docs/parametrization.md has the measured table): with one optimizer
epsilon, a folded weight sees ``eps / c`` in the groups form's units (``hptransfer.param_groups``
gives such groups ``eps * c`` to stay exact); gradient-norm clipping measures ``c * grad``;
SGD's symmetry needs ``lr / c**2`` (``param_groups`` does that, a plain SGD does not).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from ..errors import ParametrizationError, warn
from ._rules import Parametrization
from ._shapes import build, runnable
from ._table import ModuleScaling, ScalingTable
from ._trace import module_stack, run_under

__all__ = ["LR_FORMS", "fold_lrs", "lr_form_option", "check_folds", "is_fold"]

#: ``parametrize(lr_form=...)``: ``groups`` (per-parameter LRs from ``param_groups``, the default) or
#: ``multipliers`` (one global LR under Adam; the factors live in forward multipliers and init).
LR_FORMS: tuple[str, ...] = ("groups", "multipliers")

_AFFINE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                                        nn.ConvTranspose2d, nn.ConvTranspose3d)
_LINEAR_IN_PARAMS: tuple[type[nn.Module], ...] = (
    nn.Embedding, nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def lr_form_option(lr_form: str) -> dict[str, str]:
    """The table option for ``lr_form``: empty for the default, so tables of older versions stay equal."""
    if lr_form not in LR_FORMS:
        raise ParametrizationError(f"lr_form={lr_form!r} is unknown. Fix: use one of {', '.join(LR_FORMS)}.")
    return {} if lr_form == "groups" else {"lr_form": lr_form}


_REASON = "lr_form=multipliers: Adam LR x{:.4g} of {} folded into the forward"


def is_fold(scaling: ModuleScaling) -> bool:
    """True for a forward multiplier that carries a folded LR (not a μP multiplier of the model)."""
    return scaling.reason.startswith("lr_form=multipliers")


def _known(module: nn.Module, classes: tuple[type[nn.Module], ...]) -> bool:
    """``module`` is one of ``classes`` and computes as that class does: a subclass that overrides
    ``forward`` (a weight-standardised conv, a quantised linear) may not be linear in its weight."""
    for cls in classes:
        if isinstance(module, cls):
            return type(module).forward is cls.forward
    return False


def _is_affine(module: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D (GPT-2): x @ W + b, matched by name so that hptransfer does
    # not import transformers.
    return _known(module, _AFFINE) or (type(module).__name__ == "Conv1D" and hasattr(module, "nf"))


def fold_lrs(model: nn.Module, table: ScalingTable, rule: Parametrization) -> None:
    """Move each parameter's Adam LR multiplier into its module's forward and its init (in place).

    Records ``lr_folded`` per parameter and the forward multipliers in ``table.module_scalings``.

    Raises:
        ParametrizationError: a parameter whose multiplier cannot be folded exactly, with its module.
    """
    factors: dict[str, float] = {}
    for name, info in table.params.items():
        hooked = info.readout_module is not None and info.role == "output"
        c = rule.lr_mult(info, "adam", readout_hooked=hooked)
        if c != 1.0:
            factors[name] = c
    by_module: dict[str, dict[str, float]] = defaultdict(dict)
    for name, c in factors.items():
        info = table.params[name]
        if info.tied_to:
            raise _refusal(name, f"is tied to {', '.join(info.tied_to)} and used in more than one place")
        owner, _, leaf = name.rpartition(".")
        by_module[owner][leaf] = c
    tensors = dict(model.named_parameters())
    for owner, leaves in by_module.items():
        module = model.get_submodule(owner) if owner else model
        own = dict(module.named_parameters(recurse=False))
        scalings = _module_scalings(owner, module, {leaf: leaves.get(leaf, 1.0) for leaf in own})
        table.module_scalings.extend(scalings)
        for leaf, c in leaves.items():
            name = f"{owner}.{leaf}" if owner else leaf
            with torch.no_grad():
                tensors[name].div_(c)
            table.params[name] = replace(table.params[name], lr_folded=c)


def _module_scalings(owner: str, module: nn.Module, factors: dict[str, float]) -> list[ModuleScaling]:
    """The forward multipliers that give each of ``module``'s parameters its factor, or a refusal."""
    kind, reason = type(module).__name__, _REASON
    if _is_affine(module) and set(factors) <= {"weight", "bias"}:
        cw, cb = factors.get("weight", 1.0), factors.get("bias", 1.0)
        out = []
        if cw / cb != 1.0:
            out.append(ModuleScaling(owner, "input", cw / cb, reason.format(cw, f"{owner}.weight")))
        if cb != 1.0:
            out.append(ModuleScaling(owner, "output", cb, reason.format(cb, f"{owner}.bias")))
        return out
    first = next(n for n, c in factors.items() if c != 1.0)
    if _known(module, _LINEAR_IN_PARAMS):
        if len(set(factors.values())) == 1:
            c = factors[first]
            return [ModuleScaling(owner, "output", c, reason.format(c, f"{owner}.{', '.join(sorted(factors))}"))]
        raise _refusal(f"{owner}.{first}", f"shares {kind} {owner!r} with parameters of other LR multipliers "
                       f"({', '.join(f'{n}: {c:.3g}' for n, c in sorted(factors.items()))})")
    raise _refusal(f"{owner}.{first}" if owner else first,
                   f"belongs to {kind} {owner or '(root)'!r}, whose output hptransfer cannot prove linear in it "
                   "(folding works for Linear, Conv, transformers' Conv1D, Embedding and torch's norm layers, "
                   "with their own forward)")


#: Tensor properties (their getters reach the mode as ``<attribute>.__get__``) and methods that read
#: no value: a parent may look at a folded weight's dtype or shape (T5 casts to ``wo.weight.dtype``).
_METADATA_ATTRS = {"shape", "dtype", "device", "ndim", "layout", "requires_grad", "is_cuda", "is_meta", "is_leaf",
                   "grad_fn", "names", "is_sparse", "is_quantized", "nbytes", "itemsize"}
_METADATA = {torch.Tensor.size, torch.Tensor.dim, torch.Tensor.numel, torch.Tensor.element_size,
             torch.Tensor.is_floating_point, torch.Tensor.get_device, torch.Tensor.data_ptr, torch.Tensor.stride,
             torch.Tensor.is_contiguous}


class _Consumers(TorchFunctionMode):
    """Records, per watched tensor, the innermost module running when an op first consumed it
    outside its owner's forward."""

    def __init__(self, stack: list[str], watched: dict[int, tuple[str, str]]):
        super().__init__()
        self.stack, self.watched = stack, watched
        self.outside: dict[str, str] = {}

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in _METADATA or getattr(getattr(func, "__self__", None), "__name__", None) in _METADATA_ATTRS:
            return func(*args, **(kwargs or {}))  # reading a dtype or a shape uses no value
        for t in tree_flatten((args, kwargs or {}))[0]:
            hit = self.watched.get(id(t)) if isinstance(t, torch.Tensor) else None
            if hit is not None and hit[1] not in self.stack:
                self.outside.setdefault(hit[0], self.stack[-1])
        return func(*args, **(kwargs or {}))


def check_folds(model: nn.Module, table: ScalingTable, factory: Callable[..., nn.Module], example_input: Any) -> None:
    """Refuse a folded tensor that the forward reads outside its own module's call (one forward of a
    meta build of the factory on ``example_input``; for real on ``model`` when the forward reads values).

    Raises:
        ParametrizationError: naming the tensor, its module and where it was read.
    """
    folded = [n for n, i in table.params.items() if i.lr_folded != 1.0]
    if not folded:
        return
    for meta in (True, False):
        target = build(factory, table.width, meta=True, what="trace") if meta else runnable(factory, table.width, model)
        tensors = dict(target.named_parameters())
        watched = {id(tensors[n]): (n, n.rpartition(".")[0]) for n in folded if n in tensors}
        stack, handles = module_stack(target)
        mode = _Consumers(stack, watched)
        try:
            run_under(target, mode, example_input, meta=meta)
            break
        except Exception:  # the user's forward: a meta failure is retried for real
            if not meta:
                warn(f"lr_form='multipliers': hptransfer could not run the forward to see where the {len(folded)} "
                     "folded tensors are read, so a weight read outside its module would go unnoticed. Fix: pass "
                     "example_input= to parametrize().", key="lr-form-unchecked")
                return
        finally:
            for h in handles:
                h.remove()
    for name, where in mode.outside.items():
        owner = name.rpartition(".")[0]
        raise _refusal(name, f"is read outside {owner!r}'s forward (in {where or '(root)'!r}), where the "
                       "multiplier that gives it its LR cannot reach it")


def _refusal(name: str, why: str) -> ParametrizationError:
    return ParametrizationError(
        f"lr_form='multipliers' cannot move the LR multiplier of {name!r} into the forward: it {why}. "
        "Fix: keep lr_form='groups' (the default) and build the optimizer with hptransfer.optimizer / "
        "hptransfer.param_groups (with transformers: hptransfer.hf.Trainer).")
