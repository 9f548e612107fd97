"""The per-parameter LR ratios of μP, kept through other people's optimizers and schedulers.

μP lives in the *ratios* between parameter groups' learning rates (a hidden matrix at 4x width
trains at 1/4 of the input layer's LR under Adam). Two things can lose them silently:

* an optimizer built without :func:`hptransfer.param_groups` (a framework's default AdamW with
  one LR for every parameter, e.g. a plain ``transformers.Trainer``): the model trains as SP;
* an LR scheduler that writes one absolute LR into every group (``OneCycleLR(max_lr=float)``,
  ``CyclicLR``, ``CosineAnnealingLR(eta_min>0)`` near its end, ``ReduceLROnPlateau(min_lr>0)``).

One global optimizer step pre-hook (``torch.optim.optimizer.register_optimizer_step_pre_hook``,
installed on the first :func:`register_model`) watches both. Parametrized models register
themselves (weakly) when their table is attached. At an optimizer's first step, if it holds
parameters of a registered model whose table asks for different LRs and its groups were not
built by hptransfer, the step raises :class:`OptimizerConfigError` naming the fix. For groups
built by hptransfer (they carry ``lr_mult``), every step compares ``lr / lr_mult`` across groups
and warns once per optimizer, naming the scheduler, when they drift apart by more than
:data:`RATIO_TOLERANCE`. The per-step cost is one pass over the groups.

:func:`lr_scheduler` is the safe way to schedule: a torch ``LambdaLR`` that multiplies every
group's LR by the same factor.
"""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import Callable
from typing import Any, Protocol, cast

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ..errors import OptimizerConfigError, warn

__all__ = ["lr_scheduler", "register_model", "RATIO_TOLERANCE"]

#: Relative spread of ``lr / lr_mult`` across groups above which the ratios count as lost. Float
#: round-off of chained schedulers stays orders of magnitude below; a 1% change of a μP LR ratio
#: is already far below what moves an optimum.
RATIO_TOLERANCE = 0.01

_models: weakref.WeakSet[nn.Module] = weakref.WeakSet()
#: optimizer -> "plain" (its LRs agree with the tables), "pending" (not judged yet: every LR is 0, as in a
#: warmup's first step), "watch" (hptransfer's groups: ratios checked each step) or "warned"
_state: weakref.WeakKeyDictionary[torch.optim.Optimizer, str] = weakref.WeakKeyDictionary()
_installed: list[Any] = []


def register_model(model: nn.Module) -> None:
    """Watch optimizers that train ``model`` (a parametrized root module; held weakly)."""
    _models.add(model)
    if not _installed:
        _installed.append(register_optimizer_step_pre_hook(_step_pre_hook))


def _step_pre_hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    state = _state.get(opt)
    if state is None:
        state = "watch" if any("lr_mult" in g for g in opt.param_groups) else "pending"
        _state[opt] = state
        _check_eps(opt)
    if state == "pending" and _judge_plain(opt):
        _state[opt] = "plain"
    if state == "watch":
        spread = _ratio_spread(opt)
        if spread > RATIO_TOLERANCE:
            _state[opt] = "warned"
            warn(f"the LR ratios between {type(opt).__name__}'s parameter groups drifted {spread:.0%} from the ones "
                 f"hptransfer set (μP lives in those ratios), changed by {_changer(opt)}. Fix: schedule with a "
                 "multiplier that scales every group alike (hptransfer.lr_scheduler, LambdaLR, LinearLR, StepLR, "
                 "CosineAnnealingLR with eta_min=0) or give per-group values (OneCycleLR(max_lr=[g['lr'] for g in "
                 "optimizer.param_groups])); docs/integrations.md lists the schedulers that break the ratios.",
                 key=f"lr-ratio-{id(opt)}")


def _check_eps(opt: torch.optim.Optimizer) -> None:
    """Warn when hptransfer's groups scaled an epsilon other than the optimizer's own (``param_groups``
    called without the ``eps=`` the optimizer was then built with)."""
    own = opt.defaults.get("eps")
    bases = {g["eps"] / g["eps_mult"] for g in opt.param_groups if g.get("eps_mult") and "eps" in g}
    if isinstance(own, float) and own > 0 and any(not math.isclose(b, own, rel_tol=1e-6) for b in bases):
        warn(f"{type(opt).__name__} was built with eps={own:g}, but the epsilon of hptransfer's scaled groups was "
             f"derived from eps={min(bases):g}, so those tensors train with another epsilon than the rest. Fix: pass "
             "the same eps= to hptransfer.param_groups (hptransfer.optimizer does it for you).",
             key=f"eps-{id(opt)}")


def _ratio_spread(opt: torch.optim.Optimizer) -> float:
    bases = [g["lr"] / g["lr_mult"] for g in opt.param_groups if g.get("lr_mult") and isinstance(g["lr"], float)]
    lo, hi = (min(bases), max(bases)) if bases else (0.0, 0.0)
    return (hi - lo) / hi if hi > 0 else 0.0


def _changer(opt: torch.optim.Optimizer) -> str:
    """The LR scheduler(s) stepping ``opt`` (searched once, when a warning is due), else a generic phrase."""
    names = []
    for ref in gc.get_referrers(opt):
        holders = [ref] if not isinstance(ref, dict) else gc.get_referrers(ref)
        names += [type(h).__name__ for h in holders
                  if isinstance(h, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau))
                  and getattr(h, "optimizer", None) is opt]
    return ", ".join(sorted(set(names))) if names else "a scheduler or code that sets the groups' lr"


def _judge_plain(opt: torch.optim.Optimizer) -> bool:
    """Raise when ``opt`` trains a parametrized model with LRs that ignore its table; False while
    that cannot be told yet (every LR is 0), True when its LRs agree with the tables."""
    from ._groups import optimizer_family  # the groups module imports this one
    from ._rules import get_parametrization
    from ._table import scaling_table

    try:
        family = optimizer_family(type(opt))
    except OptimizerConfigError:
        return True  # a class whose μP family is unknown: nothing to compare against
    ids = {id(p): (g["lr"], i) for i, g in enumerate(opt.param_groups) for p in g["params"]}
    for model in list(_models):
        table = scaling_table(model)
        rule = get_parametrization(table.parametrization)
        seen: list[tuple[float, float, str]] = []  # (group lr, wanted multiplier, name)
        for name, p in model.named_parameters():
            if id(p) not in ids:
                continue
            info = table.info(name)
            hooked = info.readout_module is not None and info.role == "output"
            seen.append((ids[id(p)][0], rule.group_lr_mult(info, family, readout_hooked=hooked), name))
        wanted = {m for _, m, _ in seen}
        if len(wanted) < 2:
            continue  # every parameter it trains wants the same LR: one LR is right
        ratios = [lr / m for lr, m, _ in seen if isinstance(lr, float)]
        if ratios and max(ratios) == 0:
            return False
        if ratios and (max(ratios) - min(ratios)) / max(ratios) > RATIO_TOLERANCE:
            lr0, m0, n0 = max(seen, key=lambda s: s[1])
            lr1, m1, n1 = min(seen, key=lambda s: s[1])
            raise OptimizerConfigError(
                f"{type(opt).__name__} trains a {table.parametrization} model with LRs that ignore its scaling table "
                f"({n1} should train at {m1 / m0:.3g}x the LR of {n0}; it gets {lr1 / lr0:.3g}x), so it would train "
                "as SP. Fix: build the optimizer with hptransfer.optimizer(model, cls, lr=...) or "
                "hptransfer.param_groups(model, lr=...); with transformers.Trainer use hptransfer.hf.Trainer.")
    return True


class _Factor(Protocol):
    def factor(self, step: int, total: int) -> float: ...


class _Multiplier:
    """``step -> factor`` for LambdaLR; an object (not a lambda) so that the scheduler's
    ``state_dict`` saves it."""

    def __init__(self, schedule: _Factor, total: int) -> None:
        self.schedule = schedule
        self.total = total

    def __call__(self, step: int) -> float:
        return float(self.schedule.factor(min(step, self.total - 1), self.total))


def lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: _Factor | Callable[[int], float],
    total_steps: int | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A torch LR scheduler that multiplies every group's LR by the same factor (μP ratios kept).

    Args:
        optimizer: any torch optimizer, typically from :func:`hptransfer.optimizer`.
        schedule: ``step -> factor`` (a plain callable; factor 1 = the LR the group was built with),
            or an object with ``factor(step, total)`` such as a recipe's schedule
            (``hptransfer.load(...).schedule``), which then needs ``total_steps``.
        total_steps: the run's optimizer steps (only with a ``factor(step, total)`` schedule).

    Returns:
        ``torch.optim.lr_scheduler.LambdaLR``; call ``.step()`` after each ``optimizer.step()``.
        Its ``state_dict`` round-trips a ``factor(step, total)`` schedule; a plain function is not
        saved (torch's rule for ``LambdaLR``), so rebuild the scheduler with it before loading.
    """
    has_factor = callable(getattr(schedule, "factor", None))
    if has_factor and not (isinstance(total_steps, int) and total_steps > 0):
        raise OptimizerConfigError(f"a {type(schedule).__name__} schedule needs total_steps (a positive int, the "
                                   f"run's optimizer steps); got {total_steps!r}.")
    if not has_factor and not callable(schedule):
        raise OptimizerConfigError(f"schedule={schedule!r} is neither step -> factor nor an object with "
                                   "factor(step, total). Fix: pass e.g. lambda step: min(1.0, (step + 1) / 100).")
    # A factor(step, total) schedule goes in a _Multiplier, whose state (the schedule, the length) the
    # scheduler's state_dict saves; a plain callable goes in as is (LambdaLR saves the state of callable
    # objects and skips functions, which may be lambdas that cannot be pickled).
    fn = _Multiplier(cast(_Factor, schedule), cast(int, total_steps)) if has_factor \
        else cast(Callable[[int], float], schedule)
    first = fn(0)
    if not (isinstance(first, (int, float)) and math.isfinite(first) and first >= 0):
        raise OptimizerConfigError(f"the schedule's factor at step 0 is {first!r}; it must be a finite number >= 0.")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
