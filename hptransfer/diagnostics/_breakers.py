"""Known breakers of μTransfer, found in a recipe before any trial runs.

Each check looks at the proxy and target runs of a recipe (their :class:`~hptransfer.recipe.RunSpec`)
and returns :class:`Diagnosis` items with the reason, a citation and the fix (shared/RULES.md,
"Known breakers of μTransfer"):

* ``norm-gains`` -- trainable RMSNorm/LayerNorm gains broke LR transfer in Lingle's μP
  ablations (arXiv:2404.05728); non-parametric norms fixed it (``parametrization.gains``).
* ``adam-eps`` -- Adam's epsilon turns into an LR cut-off once gradients fall under it, and
  hidden-weight gradient entries shrink like 1/width under μP (Everett et al. 2024,
  arXiv:2407.05872); measured here from one backward pass at the proxy width.
* ``horizon`` -- the target trains with another batch size or length than the proxy; μP says
  nothing about either (Bjorck et al., arXiv:2409.19913).
* ``attention-scale`` -- the model has attention modules the rewrite saw no attention kernel
  in (no SDPA call traced, no ``nn.MultiheadAttention``): a hand-written softmax stays at
  1/sqrt(d) (TP5, arXiv:2203.03466, Sec. 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..parametrization import scaling_table
from ..parametrization._rewrite import attention_trace_pending
from ..recipe import Recipe, RunSpec
from ..training import build
from ..training._build import make_task
from ..training._gains import norm_gains
from ..training._loop import task_loss

__all__ = ["Diagnosis", "diagnose", "diagnose_spec", "horizon_key"]

#: Adam's epsilon counts as a cut-off when it exceeds this fraction of the typical gradient entry.
EPS_FRACTION = 0.1


@dataclass(frozen=True)
class Diagnosis:
    """One known breaker found: ``code`` (stable id), what and why, the citation and the fix."""

    code: Literal["norm-gains", "adam-eps", "horizon", "attention-scale"]
    message: str
    citation: str
    fix: str
    key: str | None = None  # the same finding logged by another stage (transfer) is dropped as said once

    def __str__(self) -> str:
        return f"[{self.code}] {self.message} ({self.citation}). Fix: {self.fix}"


def horizon_key(proxy: tuple[int | None, int | None], target: tuple[int | None, int | None]) -> str:
    """The one key of the horizon warning, whoever logs it: ``(batch, steps)`` of proxy and target."""
    return f"horizon {proxy} -> {target}"


def diagnose(recipe: Recipe) -> list[Diagnosis]:
    """Every known breaker in the recipe's proxy -> target transfer (builds the proxy model once)."""
    proxy = recipe.at(max(recipe.widths.proxy))
    width = max(recipe.widths.target or recipe.widths.proxy)  # no target yet (a Python study): the proxy's
    target = recipe.at(width, steps=recipe.transfer.steps, batch_size=recipe.transfer.batch_size)
    return diagnose_spec(proxy, target)


def diagnose_spec(proxy: RunSpec, target: RunSpec) -> list[Diagnosis]:
    """Known breakers of carrying ``proxy``'s values to ``target`` (two specs of one model)."""
    out = _horizon(proxy, target)
    if not proxy.model.names_model or proxy.parametrization is None:
        return out  # nothing to build as trained (the user's own loop): only the horizon can be judged
    task = make_task(proxy.task)
    built = build(proxy, task=task, role="proxy")
    out += _gains(built.model, proxy)
    if task is not None:  # without a task's input nothing traced the attention (a train_fn recipe)
        out += _attention(built.model)
    if task is not None and built.optimizer is not None and proxy.optimizer is not None \
            and proxy.optimizer.name in ("adam", "adamw"):
        out += _eps(built.model, built.optimizer, task, proxy, target)
    return out


def _horizon(proxy: RunSpec, target: RunSpec) -> list[Diagnosis]:
    p, t = proxy.train, target.train
    if (p.batch_size, p.steps) == (t.batch_size, t.steps):
        return []
    return [Diagnosis(
        "horizon", f"the target trains with batch_size={t.batch_size}, steps={t.steps} but the proxy with "
                   f"batch_size={p.batch_size}, steps={p.steps}; the best LR depends on both and μP covers width only",
        "Bjorck et al., arXiv:2409.19913",
        "keep transfer.batch_size/steps equal to train's, or opt in to transfer.law: step_law | deepseek",
        key=horizon_key((p.batch_size, p.steps), (t.batch_size, t.steps)))]


def _gains(model: nn.Module, spec: RunSpec) -> list[Diagnosis]:
    gains = norm_gains(model)
    if not gains or spec.parametrization is None or spec.parametrization.gains != "train":
        return []
    return [Diagnosis(
        "norm-gains", f"{len(gains)} trainable norm gain/bias tensor(s) (e.g. {', '.join(gains[:3])}) train at the "
                      "base LR at every width; trainable RMSNorm/LayerNorm gains broke LR transfer at scale",
        "Lingle 2024, arXiv:2404.05728",
        "parametrization.gains: freeze (non-parametric norms) or scaled (1/width LR for the gains)")]


def _attention(model: nn.Module) -> list[Diagnosis]:
    table = scaling_table(model)
    if table is None or table.parametrization == "sp" or table.attention or attention_trace_pending(model):
        return []  # pending: no input to trace yet (a train_fn recipe); it traces on the first forward
    mha = any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    names = [n for n, m in model.named_modules() if (n and "attn" in n.rsplit(".", 1)[-1].lower()) or
             "attention" in n.rsplit(".", 1)[-1].lower()]
    if mha or not names:
        return []
    return [Diagnosis(
        "attention-scale", f"module(s) {', '.join(names[:3])} look like attention, but no attention kernel "
                           "(scaled_dot_product_attention or nn.MultiheadAttention) ran in them, so their logits "
                           "stay at 1/sqrt(d) instead of μP's 1/d",
        "Yang et al. 2022, arXiv:2203.03466, Sec. 4",
        "compute attention with torch.nn.functional.scaled_dot_product_attention, or scale the logits by "
        "attn_mult / head_dim yourself")]


def _eps(model: nn.Module, optimizer: torch.optim.Optimizer, task: Any, proxy: RunSpec, target: RunSpec
         ) -> list[Diagnosis]:
    """Compare Adam's eps with the hidden-weight gradient entries predicted at the target width."""
    table = scaling_table(model)
    hidden = [n for n, i in table.params.items() if i.role == "hidden"] if table is not None else []
    if not hidden:
        return []
    # A few real steps first: at init a zero-initialised readout (TP5's advice) makes every
    # upstream gradient exactly zero, which says nothing about training.
    batch = int(proxy.train.batch_size or 8)
    for step in range(4):
        x, y = task.batch(step, batch, seed=proxy.seed)
        optimizer.zero_grad(set_to_none=True)
        (task_loss(model, task, x, y) if step == 0 else task.loss(model(x), y)).backward()
        if step < 3:
            optimizer.step()
    params = dict(model.named_parameters())
    grads = torch.cat([g.abs().flatten() for n in hidden if (g := params[n].grad) is not None])
    g_proxy = float(grads.median()) if grads.numel() else 0.0
    if not g_proxy > 0.0:
        return []
    # Under μP, hidden-weight gradient entries scale like 1/width (TP5, Table 3 derivation).
    g_target = g_proxy * proxy.width / target.width
    eps = float(proxy.optimizer.eps) if proxy.optimizer is not None else 0.0
    if not (math.isfinite(g_target) and eps > EPS_FRACTION * g_target):
        return []
    return [Diagnosis(
        "adam-eps", f"optimizer.eps={eps:g} against a median hidden-weight gradient entry of {g_proxy:.2g} at width "
                    f"{proxy.width} and about {g_target:.2g} at width {target.width}: eps will cap the target's "
                    "hidden updates, so the tuned LR does not mean the same there",
        "Everett et al. 2024, arXiv:2407.05872",
        f"set optimizer.eps to at most {EPS_FRACTION * g_target:.1g}")]
