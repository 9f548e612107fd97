"""Muon for hidden matrices, AdamW for everything else, as one optimizer (the ``spectral`` family).

Muon (Jordan et al. 2024) replaces a matrix's momentum by its orthogonalisation (a few Newton-Schulz
iterations), so every update has singular values near 1: its spectral norm is the learning rate,
whatever the gradient's size. The spectral condition of Yang, Simon and Bernstein (2023,
arXiv:2310.17813) asks for hidden updates with spectral norm Theta(sqrt(fan_out / fan_in)); relative to
the base shape that is an LR multiplier ``sqrt(fan_out_mult / fan_in_mult)`` (1 for matrices whose two
dimensions grow together, not Adam's ``1 / fan_in_mult``). Embeddings, readout, norm gains, biases and
non-2D hidden tensors (convolutions) go to AdamW under the Adam-family μP rules.

:class:`MuonAdamW` uses ``torch.optim.Muon`` when this torch has it (2.9+), else :class:`OwnMuon`, the same
algorithm (Nesterov momentum, quintic Newton-Schulz with torch's coefficients, LR x sqrt(max(1, rows/cols))).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..errors import OptimizerConfigError

__all__ = ["MuonAdamW", "OwnMuon", "muon_class", "newton_schulz"]

#: torch.optim.Muon's quintic coefficients and step count (Keller Jordan's reference implementation).
NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def newton_schulz(g: torch.Tensor, steps: int = NS_STEPS, eps: float = 1e-7) -> torch.Tensor:
    """Approximate orthogonalisation ``U V^T`` of a 2-D ``g`` (singular values pushed to about 1), in bfloat16
    as ``torch.optim.Muon`` computes it."""
    a, b, c = NS_COEFFICIENTS
    x = g.bfloat16()
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class OwnMuon(torch.optim.Optimizer):
    """Muon for torch builds without ``torch.optim.Muon``; the same update as torch's with
    ``adjust_lr_fn="original"``: ``p <- p (1 - lr wd) - lr sqrt(max(1, rows/cols)) NS(nesterov momentum)``."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, eps: float = 1e-7, ns_steps: int = NS_STEPS):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                                  "nesterov": nesterov, "eps": eps, "ns_steps": ns_steps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            mom = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - mom)
                update = p.grad.lerp(buf, mom) if group["nesterov"] else buf
                update = newton_schulz(update, group["ns_steps"], group["eps"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-group["lr"] * math.sqrt(max(1.0, p.size(0) / p.size(1))))
        return loss


def muon_class() -> type[torch.optim.Optimizer]:
    """``torch.optim.Muon`` if this torch has it, else :class:`OwnMuon`."""
    return getattr(torch.optim, "Muon", OwnMuon)


class MuonAdamW:
    """One optimizer over :func:`hptransfer.param_groups` built for the ``spectral`` family: groups tagged
    ``family="spectral"`` (2-D hidden matrices) step with Muon, the others with AdamW.

    ``param_groups`` is the list of both inner optimizers' groups (the same dicts), so LR schedules that
    scale each group's ``lr`` work unchanged. ``lr`` is the AdamW base LR (groups carry their own LRs).
    """

    def __init__(self, groups: list[dict[str, Any]], lr: float = 1e-3, *, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, momentum: float = 0.95, weight_decay: float = 0.0):
        spectral = [g for g in groups if g.get("family") == "spectral"]
        rest = [g for g in groups if g.get("family") != "spectral"]
        bad = [n for g in spectral for n, p in zip(g.get("param_names", []), g["params"]) if p.ndim != 2]
        if bad:
            raise OptimizerConfigError(f"Muon updates 2-D matrices only, and {bad[:3]} are not. Fix: build the "
                                       "groups with hptransfer.param_groups(model, optimizer='muon', ...).")
        self.optimizers: list[torch.optim.Optimizer] = []
        if spectral:
            muon: Any = muon_class()  # torch.optim.Muon or our own: both take these keywords
            self.optimizers.append(muon(spectral, lr=lr, momentum=momentum, weight_decay=weight_decay))
        if rest:
            self.optimizers.append(torch.optim.AdamW(rest, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.param_groups = [g for opt in self.optimizers for g in opt.param_groups]
        self.defaults = {"lr": lr}

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        for opt in self.optimizers:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
