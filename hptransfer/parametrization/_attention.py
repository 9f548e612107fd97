"""Attention-logit scaling without editing the model's source.

μP divides attention logits by the head dimension d instead of sqrt(d) (Tensor Programs V,
arXiv:2203.03466, Sec. 4 / Table 3). Relative to the model's own scale, hptransfer multiplies
the softmax scale by ``attn_mult * sqrt(d_base / d)``: at the base width this is exactly 1 (μP
equals SP there), and as the head dimension grows it turns 1/sqrt(d) into sqrt(d_base)/d.

Mechanism: a :class:`torch.overrides.TorchFunctionMode` that is active only while the modules
that compute attention run (found by a trace on the meta device, or by type for
``nn.MultiheadAttention``). Inside, it rewrites two calls:

* ``F.scaled_dot_product_attention(q, k, v, ..., scale=s)``: ``scale`` becomes
  ``(s or 1/sqrt(d)) * factor(d)`` with ``d = q.shape[-1]``.
* ``F.multi_head_attention_forward`` (what ``nn.MultiheadAttention`` calls): the query rows
  of the input projection and its bias are multiplied by the factor before the call. This
  multiplies q, hence the logits, by the factor; the parameter, its init and its gradient
  path are unchanged, so it is the same computation as scaling the logits.

Hugging Face attention modules that keep their scale in ``self.scaling`` (GPT-2, Llama, BERT,
ViT in transformers 5.24) pass it as ``scaling=`` to whichever attention function the config
selects; for them the attribute itself is multiplied by the factor (:func:`attach_scaling_attributes`),
which rescales eager, sdpa, flash and flex attention alike, with no global registry and no change
to the config. The module's own value is kept beside it, so attaching a table again, to a deep
copy or to a model reloaded from a checkpoint, sets the same scale.

Limits (documented in the README): attention written by hand as ``softmax(q @ k.T / ...)``
is invisible to this mechanism -- declare it with a manual scale or use SDPA; a model that
calls SDPA from a module whose head dimension cannot be traced on the meta device needs
``example_input=``; factors are looked up by runtime head dimension, so two attention kinds
with the same head dimension but different base head dimensions in one model are refused.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ParametrizationError

__all__ = ["AttentionScaling", "attach_attention", "detach_attention", "scaling_attribute", "attach_scaling_attributes"]

_MHA_SIG = inspect.signature(F.multi_head_attention_forward)
_HANDLE_ATTR = "_hptransfer_attention_handles"


class AttentionScaling(TorchFunctionMode):
    """Rewrites attention calls made while active; ``factors`` maps head_dim -> scale factor."""

    def __init__(self, sdpa: dict[int, float], mha: dict[int, float], where: str):
        super().__init__()
        self.sdpa = dict(sdpa)
        self.mha = dict(mha)
        self.where = where

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is F.scaled_dot_product_attention:
            q = args[0] if args else kwargs["query"]
            d = int(q.shape[-1])
            factor = self._factor(self.sdpa, d, "scaled_dot_product_attention")
            if factor != 1.0:
                scale = kwargs.get("scale")
                if scale is None and len(args) > 6:
                    scale, args = args[6], args[:6]
                base = (1.0 / math.sqrt(d)) if scale is None else scale
                kwargs["scale"] = base * factor
        elif func is F.multi_head_attention_forward:
            bound = _MHA_SIG.bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            embed, heads = int(a["embed_dim_to_check"]), int(a["num_heads"])
            factor = self._factor(self.mha, embed // heads, "nn.MultiheadAttention")
            if factor != 1.0:
                e = embed
                if a["use_separate_proj_weight"]:
                    a["q_proj_weight"] = a["q_proj_weight"] * factor
                else:
                    w = a["in_proj_weight"]
                    a["in_proj_weight"] = torch.cat([w[:e] * factor, w[e:]], dim=0)
                b = a["in_proj_bias"]
                if b is not None:
                    a["in_proj_bias"] = torch.cat([b[:e] * factor, b[e:]], dim=0)
                return func(*bound.args, **bound.kwargs)
            return func(*args, **kwargs)
        return func(*args, **kwargs)

    def _factor(self, table: dict[int, float], d: int, what: str) -> float:
        try:
            return table[d]
        except KeyError:
            raise ParametrizationError(
                f"{self.where} calls {what} with head_dim={d}, which hptransfer did not see when it traced the "
                f"model (known head dims: {sorted(table) or 'none'}). Fix: pass example_input= to parametrize() "
                "with an input like the one used here, so the trace sees this attention."
            ) from None


class _Enter:
    """Forward pre-hook: activate the attention mode for this module's forward."""

    def __init__(self, mode: AttentionScaling):
        self.mode = mode
        self.depth = 0  # entries not yet exited (recursion-safe, and _Exit never over-pops)

    def __call__(self, module: nn.Module, args: Any) -> None:
        self.mode.__enter__()
        self.depth += 1


class _Exit:
    """Forward hook (always called, also on error): deactivate the attention mode."""

    def __init__(self, enter: _Enter):
        self.enter = enter

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.enter.depth > 0:
            self.enter.depth -= 1
            self.enter.mode.__exit__(None, None, None)


def attach_attention(
    root: nn.Module, modules: dict[str, tuple[dict[int, float], dict[int, float]]]
) -> dict[str, _Enter]:
    """Activate attention scaling in each named submodule: ``name -> (sdpa factors, mha factors)``.

    Returns the pre-hooks by module name (a caller already inside the root's forward uses
    the root's entry to activate it for the call in progress).
    """
    detach_attention(root)
    handles = []
    enters: dict[str, _Enter] = {}
    for name, (sdpa, mha) in modules.items():
        module = root.get_submodule(name) if name else root
        enter = _Enter(AttentionScaling(sdpa, mha, where=f"module {name or '<root>'!r}"))
        enters[name] = enter
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(_Exit(enter), always_call=True))
    root.__dict__[_HANDLE_ATTR] = handles
    return enters


def detach_attention(root: nn.Module) -> None:
    for h in root.__dict__.pop(_HANDLE_ATTR, []):
        h.remove()


#: ``module.__dict__`` key holding an attention module's own ``scaling`` before hptransfer changed it.
_SCALING0 = "_hptransfer_scaling0"


def scaling_attribute(module: nn.Module) -> float | None:
    """The softmax scale a Hugging Face attention module reads at call time, or ``None``.

    transformers' attention modules (GPT-2, Llama, BERT, ViT in 5.24, the version tested) store their scale
    as a float ``self.scaling`` and pass ``scaling=self.scaling`` to whichever attention function
    the config selects (eager, sdpa, flash, flex). Only modules defined in ``transformers`` count:
    elsewhere an attribute of that name says nothing about how the forward uses it.
    """
    if not type(module).__module__.startswith("transformers."):
        return None
    value = module.__dict__.get(_SCALING0, getattr(module, "scaling", None))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def attach_scaling_attributes(root: nn.Module, factors: dict[str, float]) -> None:
    """Set ``scaling = own scaling x factor`` on each named module; every module changed before
    and not named gets its own scale back, so attaching twice never multiplies twice."""
    for module in root.modules():
        if _SCALING0 in module.__dict__:
            module.scaling = module.__dict__.pop(_SCALING0)
    for name, factor in factors.items():
        module = root.get_submodule(name) if name else root
        own = scaling_attribute(module)
        if own is None:
            raise ParametrizationError(
                f"the scaling table rescales the attention of module {name!r} through its `scaling` attribute, "
                f"which this {type(module).__name__} does not have. Fix: attach a table made for this model "
                "architecture and transformers version."
            )
        module.__dict__[_SCALING0] = own
        module.scaling = own * factor  # type: ignore[assignment]  # a float attribute of the HF module
