"""Optimizer groups: per-parameter learning rates, weight decay and epsilon from the scaling table.

One pure function, :func:`param_groups`, builds groups that go straight into any torch
optimizer of a known family; :func:`optimizer` is the one-line convenience. Parameters with
the same multipliers share a group, and every group records its ``param_names`` and the
``lr_mult`` it was built with. A scheduler that multiplies each group's ``lr`` by one factor keeps
the ratios; one that writes absolute LRs does not (``_lr_ratios`` watches for that).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn

from ..errors import OptimizerConfigError
from ._muon import MuonAdamW
from ._rules import OPTIMIZER_FAMILIES, get_parametrization, is_spectral
from ._table import scaling_table

__all__ = ["param_groups", "optimizer", "optimizer_family", "optimizer_class", "OPTIMIZERS", "WEIGHT_DECAY_MODES"]

#: ``coupled``: torch's ``lr * wd`` decay, with wd divided by each group's LR multiplier so
#: that ``lr * wd`` stays what it is at the base width (as ``mup.MuAdamW`` does).
#: ``independent``: decay ``wd`` per step (times the LR schedule), whatever the LR
#: (Wortsman et al. 2023, arXiv:2309.14322): group wd = wd / group lr.
WEIGHT_DECAY_MODES: tuple[str, ...] = ("coupled", "independent")

#: Optimizer names that recipes, the check and the coordinate check accept -> torch classes
#: (the one table; anything else is passed as a class to :func:`optimizer`).
OPTIMIZERS: dict[str, type] = {
    "adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD, "muon": MuonAdamW,
}


def optimizer_class(name: str) -> type:
    """The torch class of an optimizer name in :data:`OPTIMIZERS`."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise OptimizerConfigError(f"optimizer {name!r} is unknown. Fix: use one of {', '.join(OPTIMIZERS)}, or "
                                   "pass a torch.optim.Optimizer class to hptransfer.optimizer().")
    return OPTIMIZERS[key]


_FAMILY_ALIASES: dict[str, str] = {
    "adam": "adam", "adamw": "adam", "adamax": "adam", "nadam": "adam", "radam": "adam",
    "rmsprop": "adam", "adagrad": "adam", "sgd": "sgd", "asgd": "sgd", "muon": "spectral",
    "spectral": "spectral",
}
_FAMILY_CLASSES: tuple[tuple[type, str], ...] = (
    (torch.optim.Adam, "adam"), (torch.optim.AdamW, "adam"), (torch.optim.Adamax, "adam"),
    (torch.optim.NAdam, "adam"), (torch.optim.RAdam, "adam"), (torch.optim.RMSprop, "adam"),
    (torch.optim.Adagrad, "adam"), (torch.optim.SGD, "sgd"), (torch.optim.ASGD, "sgd"), (MuonAdamW, "spectral"),
)


def optimizer_family(optimizer: str | type) -> str:
    """The rule family (``"adam"``, ``"sgd"`` or ``"spectral"``) of an optimizer name or class."""
    if isinstance(optimizer, type):
        for cls, family in _FAMILY_CLASSES:
            if issubclass(optimizer, cls):
                return family
        raise OptimizerConfigError(
            f"hptransfer does not know which μP family {optimizer.__name__} belongs to. Fix: pass "
            f"family='adam' (updates normalised entrywise) or family='sgd' (updates proportional to the gradient)."
        )
    key = str(optimizer).lower()
    if key in _FAMILY_ALIASES:
        return _FAMILY_ALIASES[key]
    raise OptimizerConfigError(
        f"unknown optimizer {optimizer!r}. Fix: use one of {', '.join(sorted(_FAMILY_ALIASES))}, "
        f"or a family name ({', '.join(OPTIMIZER_FAMILIES)})."
    )


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.0,
    optimizer: str | type = "adamw",
    weight_decay_mode: str = "coupled",
    decay: str | Collection[str] = "all",
    eps: float | None = None,
    scale_eps: bool = False,
    muon_lr: float | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with per-parameter learning rates from the model's table.

    Args:
        model: a model from :func:`hptransfer.parametrize` (also inside DDP or ``torch.compile``).
        lr: the base learning rate: the LR at the base width (a tuned value transfers as is).
        weight_decay: base weight decay. Meaning depends on ``weight_decay_mode``. Default 0.
        optimizer: optimizer name (``"adamw"``, ``"sgd"``, ...), family, or class. Default AdamW.
        weight_decay_mode: ``"coupled"`` (default; ``lr*wd`` constant across widths) or
            ``"independent"`` (decay ``wd`` per step, independent of LR).
        decay: ``"all"`` (default, torch's behaviour), ``"matrices"`` (only tensors with 2+
            dims decay, nanoGPT's rule), or the names of the parameters that decay (as
            ``model.named_parameters()`` gives them; e.g. ``Trainer.get_decay_parameter_names``).
        eps: Adam epsilon at the base width (only with ``scale_eps``; default 1e-8).
        scale_eps: shrink Adam's epsilon per group as the parametrization says. Default off.
        muon_lr: with ``optimizer="muon"`` (the ``spectral`` family), the base LR of the Muon groups
            (2-D hidden matrices); default ``lr``. The other groups use AdamW with ``lr``.

    Returns:
        A list of dicts with ``params``, ``lr``, ``weight_decay`` (and ``eps``), plus
        ``param_names`` and ``lr_mult`` (group LR / ``lr``) for inspection; under the ``spectral``
        family each group also says which optimizer steps it (``family``: ``spectral`` or ``adam``).
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise OptimizerConfigError(f"lr={lr!r} must be a positive finite number.")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise OptimizerConfigError(f"weight_decay={weight_decay!r} must be a number >= 0.")
    if weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise OptimizerConfigError(
            f"weight_decay_mode={weight_decay_mode!r} is unknown. Fix: use one of {', '.join(WEIGHT_DECAY_MODES)}."
        )
    decays = _decay_rule(model, decay)
    family = optimizer_family(optimizer)
    if scale_eps and family == "sgd":
        raise OptimizerConfigError("scale_eps=True applies to the Adam family only. Fix: drop scale_eps.")
    table = scaling_table(model)
    rule = get_parametrization(table.parametrization)
    base_eps = 1e-8 if eps is None else float(eps)

    groups: dict[tuple[float, float, float | None, str], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        info = table.info(name)
        hooked = info.readout_module is not None and info.role == "output"
        muon = is_spectral(info, family)
        mult = rule.lr_mult(info, family, readout_hooked=hooked) * (muon_lr / lr if muon and muon_lr else 1.0)
        group_lr = lr * mult
        wd = weight_decay if decays(name, p) else 0.0
        if wd:
            coupled = wd * rule.wd_mult(info, family, readout_hooked=hooked)
            wd = coupled if weight_decay_mode == "coupled" else wd / group_lr
        group_eps = base_eps * rule.eps_mult(info, family, readout_hooked=hooked) if scale_eps and not muon else None
        route = ("spectral" if muon else "adam") if family == "spectral" else ""
        key = (mult, wd, group_eps, route)
        if key not in groups:
            groups[key] = {"params": [], "param_names": [], "lr": group_lr, "weight_decay": wd, "lr_mult": mult}
            if group_eps is not None:
                groups[key]["eps"] = group_eps
            if route:
                groups[key]["family"] = route
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return list(groups.values())


def _decay_rule(model: nn.Module, decay: str | Collection[str]) -> Callable[[str, torch.Tensor], bool]:
    """``(name, param) -> decays?`` for ``param_groups``' ``decay`` argument, checked."""
    if isinstance(decay, str):
        if decay not in ("all", "matrices"):
            raise OptimizerConfigError(f"decay={decay!r} is unknown. Fix: use 'all', 'matrices' or a set of "
                                       "parameter names.")
        return (lambda name, p: True) if decay == "all" else (lambda name, p: p.ndim >= 2)
    names = set(decay)
    unknown = sorted(names - {n for n, _ in model.named_parameters()})
    if unknown:
        raise OptimizerConfigError(f"decay names {len(unknown)} parameter(s) the model does not have "
                                   f"({', '.join(unknown[:3])}). Fix: name parameters as model.named_parameters() "
                                   "does.")
    return lambda name, p: name in names


def optimizer(
    model: nn.Module,
    optimizer_cls: type[torch.optim.Optimizer],
    *,
    lr: float,
    weight_decay: float = 0.0,
    family: str | None = None,
    weight_decay_mode: str = "coupled",
    decay: str | Collection[str] = "all",
    scale_eps: bool = False,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """``optimizer_cls(param_groups(model, ...), lr=lr, **kwargs)`` in one call.

    ``family`` is needed only for optimizer classes hptransfer does not know (``"adam"``, ``"sgd"``
    or ``"spectral"``). ``muon_lr`` goes to :func:`param_groups`; other keyword arguments (``betas``,
    ``momentum``, ``eps``...) go to the optimizer.
    """
    fam = family or optimizer_family(optimizer_cls)
    groups = param_groups(
        model, lr=lr, weight_decay=weight_decay, optimizer=fam, weight_decay_mode=weight_decay_mode,
        decay=decay, eps=kwargs.get("eps"), scale_eps=scale_eps, muon_lr=kwargs.pop("muon_lr", None),
    )
    cls: Any = optimizer_cls  # a torch optimizer class: its own keywords, not Optimizer's (params, defaults)
    return cls(groups, lr=lr, **kwargs)

