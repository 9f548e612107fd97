"""The Python doors' keyword arguments as recipe fields.

``check_transfer``, ``coord_check`` and ``transfer`` take options the way ``hptransfer.parametrize``
and torch optimizers take them (``base_std=``, ``betas=(0.9, 0.95)``, ``amsgrad=True``); the recipe
holds the same things as section fields (``parametrization.init_std``, ``optimizer.beta1``/``beta2``,
``optimizer.kwargs``). These two functions are the one translation, so that every option reaches the
one implementation behind both doors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import RecipeError

__all__ = ["parametrization_fields", "optimizer_fields"]

#: ``parametrize`` keyword -> ``parametrization`` field (the rest go to ``parametrization.options``).
_PARAMETRIZE_FIELDS = {"output_mult": "output_mult", "attn_mult": "attn_mult", "base_std": "init_std",
                       "init_std": "init_std", "zero_readout": "zero_readout", "zero_query": "zero_query",
                       "gains": "gains", "base_width": "base_width", "base_depth": "base_depth"}
#: Optimizer keywords that are ``optimizer`` fields (the rest go to ``optimizer.kwargs``).
_OPTIMIZER_FIELDS = ("lr", "eps", "momentum", "weight_decay", "weight_decay_mode", "decay", "scale_eps",
                     "grad_clip", "muon_lr_ratio", "beta1", "beta2")


def parametrization_fields(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``parametrize(**options)`` as ``parametrization`` section fields (``base_std`` -> ``init_std``);
    options that are no field (``readout``, ``roles``, ``branches``...) go under ``options``."""
    rest = dict(options or {})
    out = {_PARAMETRIZE_FIELDS[k]: rest.pop(k) for k in list(rest) if k in _PARAMETRIZE_FIELDS}
    if rest:
        out["options"] = rest
    return out


def optimizer_fields(options: Mapping[str, Any] | None, lr: float | None = None) -> dict[str, Any]:
    """Optimizer keywords as ``optimizer`` section fields: ``betas`` -> ``beta1``/``beta2``, ``muon_lr`` ->
    ``muon_lr_ratio`` (relative to ``lr``, given or among the options), the μP group options
    (``weight_decay``, ``eps``...) as their fields; anything else (``amsgrad``, ``fused``...) under
    ``kwargs``, for the optimizer class."""
    rest = dict(options or {})
    out: dict[str, Any] = {k: rest.pop(k) for k in list(rest) if k in _OPTIMIZER_FIELDS}
    if "betas" in rest:
        out["beta1"], out["beta2"] = (float(b) for b in rest.pop("betas"))
    if "muon_lr" in rest:
        muon_lr = rest.pop("muon_lr")
        if muon_lr is not None:
            base = lr if lr is not None else out.get("lr")
            if base is None:
                raise RecipeError([("optimizer.muon_lr_ratio", "muon_lr given without the lr it is relative to. "
                                                               "Fix: give lr too, or muon_lr_ratio.")])
            out["muon_lr_ratio"] = float(muon_lr) / float(base)
    if rest:
        out["kwargs"] = rest
    return out
