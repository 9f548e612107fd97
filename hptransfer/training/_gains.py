"""Norm gains: find them, and freeze them or scale their LR (``parametrization.gains``).

Trainable RMSNorm/LayerNorm gains broke LR transfer in Lingle's μP ablations up to 10B
parameters (arXiv:2404.05728), and non-parametric norms fixed it. ``freeze`` makes the norms
non-parametric after the fact (gains and biases stay at their init, 1 and 0, and leave the
optimizer); ``scaled`` keeps them trainable with a 1/width LR rule (LR x base_width / width),
the rule μP gives matrix-like parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["norm_gains", "apply_gains", "GAIN_MODES"]

#: ``parametrization.gains`` values.
GAIN_MODES = ("train", "freeze", "scaled")

_NORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm)


def _is_norm(module: nn.Module) -> bool:
    # User code often defines its own RMSNorm/LayerNorm class; the name is the convention.
    name = type(module).__name__.lower()
    return isinstance(module, _NORM_TYPES) or name.endswith(("norm", "rmsnorm", "layernorm"))


def norm_gains(model: nn.Module) -> list[str]:
    """Names of the trainable parameters owned directly by normalisation modules (gains and biases)."""
    out = []
    for mname, module in model.named_modules():
        if not _is_norm(module):
            continue
        for pname, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                out.append(f"{mname}.{pname}" if mname else pname)
    return out


def apply_gains(model: nn.Module, groups: list[dict[str, Any]], mode: str, width_ratio: float) -> list[dict[str, Any]]:
    """Optimizer groups with the norm gains frozen (``freeze``), LR-scaled by 1/``width_ratio``
    (``scaled``) or left as they are (``train``). ``width_ratio`` is width / base width."""
    if mode == "train":
        return groups
    gains = set(norm_gains(model))
    if not gains:
        return groups
    params = dict(model.named_parameters())
    out: list[dict[str, Any]] = []
    for g in groups:
        keep = [(n, p) for n, p in zip(g["param_names"], g["params"]) if n not in gains]
        moved = [(n, p) for n, p in zip(g["param_names"], g["params"]) if n in gains]
        if keep:
            out.append({**g, "param_names": [n for n, _ in keep], "params": [p for _, p in keep]})
        if moved and mode == "scaled":
            out.append({**g, "param_names": [n for n, _ in moved], "params": [p for _, p in moved],
                        "lr": g["lr"] / width_ratio, "lr_mult": g.get("lr_mult", 1.0) / width_ratio})
    if mode == "freeze":
        with torch.no_grad():
            for n in gains:
                params[n].requires_grad_(False)
    return out
