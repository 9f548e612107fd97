"""Optimizer groups: per-parameter learning rates, weight decay and epsilon from the scaling table.

One pure function, :func:`param_groups`, builds groups that go straight into any torch
optimizer of a known family; :func:`optimizer` is the one-line convenience. Parameters with
the same multipliers share a group, and every group records its ``param_names`` and the
``lr_mult`` it was built with. A scheduler that multiplies each group's ``lr`` by one factor keeps
the ratios; one that writes absolute LRs does not (``_lr_ratios`` watches for that).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import OptimizerConfigError
from ._muon import MuonAdamW
from ._rules import OPTIMIZER_FAMILIES, Parametrization, get_parametrization, is_spectral
from ._table import ParamInfo, scaling_table

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
    family: str | None = None,
    decoupled_weight_decay: bool | None = None,
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
        eps: Adam epsilon at the base width (used with ``scale_eps`` and on tensors of an
            ``lr_form="multipliers"`` model; default: the optimizer's own, 1e-8 for Adam).
        scale_eps: shrink Adam's epsilon per group as the parametrization says. Default off.
        muon_lr: with ``optimizer="muon"`` (the ``spectral`` family), the base LR of the Muon groups
            (2-D hidden matrices); default ``lr``. The other groups use AdamW with ``lr``.
        family: the μP family (``"adam"``, ``"sgd"``, ``"spectral"``) of an optimizer class hptransfer
            does not know; default: looked up from ``optimizer``.
        decoupled_weight_decay: whether the optimizer decays decoupled (AdamW) or adds the decay to the
            gradient (SGD, torch's Adam); default: the class's own default. Read only for tensors folded by
            ``lr_form="multipliers"``.

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
    family = family or optimizer_family(optimizer)
    if scale_eps and family == "sgd":
        raise OptimizerConfigError("scale_eps=True applies to the Adam family only. Fix: drop scale_eps.")
    table = scaling_table(model)
    setting = _Settings(get_parametrization(table.parametrization), family, lr, weight_decay_mode == "coupled",
                        _default_eps(optimizer) if eps is None else float(eps), scale_eps,
                        _decay_in_gradient(optimizer, family) if decoupled_weight_decay is None
                        else not decoupled_weight_decay and family != "spectral", muon_lr)
    groups: dict[tuple[float, float, float | None, str], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = setting.of(table.info(name), weight_decay if decays(name, p) else 0.0)
        mult, wd, group_eps, route = key
        if key not in groups:
            groups[key] = {"params": [], "param_names": [], "lr": lr * mult, "weight_decay": wd, "lr_mult": mult}
            if group_eps is not None:  # eps_mult: the optimizer's own eps must be base_eps (_lr_ratios checks)
                groups[key].update(eps=group_eps, eps_mult=group_eps / setting.base_eps)
            if route:
                groups[key]["family"] = route
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return list(groups.values())


@dataclass(frozen=True)
class _Settings:
    """What :func:`param_groups` was asked for; :meth:`of` turns it into one tensor's group settings."""

    rule: Parametrization
    family: str
    lr: float
    coupled: bool
    base_eps: float
    scale_eps: bool
    in_gradient: bool
    muon_lr: float | None

    def of(self, info: ParamInfo, wd: float) -> tuple[float, float, float | None, str]:
        """``(lr multiplier, weight decay, epsilon or None, route)`` of the tensor's group."""
        rule, family = self.rule, self.family
        hooked = info.readout_module is not None and info.role == "output"
        muon = is_spectral(info, family)
        muon_factor = self.muon_lr / self.lr if muon and self.muon_lr else 1.0
        mult = rule.group_lr_mult(info, family, readout_hooked=hooked) * muon_factor
        if wd:  # in the groups form's terms, then carried to a folded tensor (lr_form="multipliers")
            groups_lr = self.lr * rule.lr_mult(info, family, readout_hooked=hooked) * muon_factor
            wd = wd * rule.wd_mult(info, family, readout_hooked=hooked) if self.coupled else wd / groups_lr
            wd *= info.lr_folded ** (2 if self.in_gradient else 1)
        eps = self.base_eps * rule.eps_mult(info, family, readout_hooked=hooked) if self.scale_eps and not muon \
            else None
        if info.lr_folded != 1.0 and family != "sgd" and not muon:
            # a folded tensor's gradient is c times the groups form's: so must its epsilon be
            eps = (self.base_eps if eps is None else eps) * info.lr_folded
        return mult, wd, eps, ("spectral" if muon else "adam") if family == "spectral" else ""


def _default_eps(optimizer: str | type) -> float:
    """The epsilon an optimizer uses when none is given (its ``__init__`` default; 1e-8 if unknown)."""
    cls = optimizer if isinstance(optimizer, type) else OPTIMIZERS.get(str(optimizer).lower())
    try:
        default = inspect.signature(cls).parameters["eps"].default if cls is not None else None
    except (KeyError, TypeError, ValueError):
        default = None
    return float(default) if isinstance(default, float) else 1e-8


#: Optimizers whose ``weight_decay`` is added to the gradient (L2) rather than applied decoupled.
_L2_DECAY = ("adam", "nadam", "radam", "adamax", "rmsprop", "adagrad", "sgd", "asgd")


def _decay_in_gradient(optimizer: str | type, family: str) -> bool:
    """True when the optimizer's weight decay is added to the gradient (SGD, torch's Adam), False when it
    is decoupled (AdamW, Muon, and any class hptransfer does not know); a tensor folded by
    ``lr_form="multipliers"`` needs wd x c**2 in the first case, x c in the second."""
    if family == "sgd":
        return True
    if isinstance(optimizer, type):
        return not issubclass(optimizer, torch.optim.AdamW) and optimizer.__name__.lower() in _L2_DECAY
    return str(optimizer).lower() in _L2_DECAY


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
    groups = param_groups(
        model, lr=lr, weight_decay=weight_decay, optimizer=optimizer_cls, weight_decay_mode=weight_decay_mode,
        decay=decay, eps=kwargs.get("eps"), scale_eps=scale_eps, muon_lr=kwargs.pop("muon_lr", None),
        family=family, decoupled_weight_decay=kwargs.get("decoupled_weight_decay"),
    )
    cls: Any = optimizer_cls  # a torch optimizer class: its own keywords, not Optimizer's (params, defaults)
    return cls(groups, lr=lr, **kwargs)

