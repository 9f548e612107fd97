"""Adam's epsilon as the cause of a failing coordinate check.

Where a parameter's gradient entries fall below Adam's epsilon, eps, not the gradient, sets the
update size. μP's gradients shrink with width (hidden weights like 1/width), so those updates
vanish with width although the rules are right (Everett et al. 2024, arXiv:2407.05872). The check
records such parameters at its widest width and, for modules whose updates vanish, names them in
the result and its summary with the fix.
"""

from __future__ import annotations

import torch
from torch import nn

from ._result import UPD

__all__ = ["EPS_FRACTION", "eps_capped", "eps_cause"]

#: Adam's epsilon swamps a gradient entry when it exceeds this fraction of it (as the recipe
#: diagnostics judge it: hptransfer.diagnostics).
EPS_FRACTION = 0.1


def eps_capped(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, dict[str, float]]:
    """Parameters (by name) whose median gradient entry is below ``1 / EPS_FRACTION`` x their group's
    Adam epsilon: there eps, not the gradient, sets the update size, and since μP's gradients shrink
    with width (hidden weights like 1/width) those updates vanish with width though the rules are
    right (Everett et al. 2024, arXiv:2407.05872). A ConvNeXt-style layer scale of 1e-6 under Adam's
    default eps 1e-8 fails the check this way and passes with eps 1e-16."""
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, dict[str, float]] = {}
    for group in opt.param_groups:
        eps = group.get("eps")
        if not isinstance(eps, float) or eps <= 0.0:
            continue
        for p in group["params"]:
            if p.grad is None or p.grad.numel() < 2 or id(p) not in names:
                continue
            g = float(p.grad.detach().abs().median())
            if g > 0.0 and eps > EPS_FRACTION * g:
                out[names[id(p)]] = {"median_grad": g, "eps": eps}
    return out


def eps_cause(failing: list[tuple[str, int, str, float]], capped: dict[str, dict[str, float]]
              ) -> dict[str, dict[str, float]]:
    """The ``capped`` parameters that belong to a module failing with vanishing updates (a growing
    slope is not eps's doing)."""
    vanishing = {m for m, _, kind, slope in failing if kind == UPD and slope < 0}
    return {n: v for n, v in capped.items() if any(n == m or n.startswith(m + ".") for m in vanishing)}

