"""Shared parts of the side-by-side benchmarks (``bench_transfer.py``, ``bench_tuning.py``).

* :class:`BenchRunner`: one training run of a recipe under ``sp`` or ``mup`` (hptransfer, through
  :class:`hptransfer.check._runner.RecipeRunner`) or ``mup_package`` (the ``mup`` package, set up as its
  README says, trained in the same loop on the same batches).
* :func:`mup_package_model`: that set-up. The README's steps, applied to our reference models
  without editing their source: the readout ``nn.Linear`` becomes ``mup.MuReadout`` (zero-initialised
  when the recipe zero-initialises its readout), attention logits use ``1/d`` instead of
  ``1/sqrt(d)`` (``q @ k.T * 8 / d`` for the README's base head dim 64; here ``sqrt(d_base) / d``,
  equal to 1/sqrt(d) at the recipe's base width), the query is zeroed when the recipe says
  ``zero_query`` (as the README recommends), ``mup.set_base_shapes(model, base, delta=delta)`` with
  base and delta models at the base width and twice it, and ``mup.MuAdam``/``MuAdamW``/``MuSGD``.
* :func:`machine`: the machine line every result file carries.
"""

from __future__ import annotations

import math
import os
import platform
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hptransfer.check._runner import RecipeRunner
from hptransfer.recipe import Recipe, RunSpec
from hptransfer.training import TrainResult, train
from hptransfer.training._build import make_factory, make_schedule, make_task
from hptransfer.training._loop import DivergenceGuard


def machine() -> str:
    """One line naming the machine and the software versions."""
    import optuna

    return (f"{platform.machine()} CPU, {os.cpu_count()} cores (shared with other jobs), Python "
            f"{platform.python_version()}, torch {torch.__version__}, optuna {optuna.__version__}, "
            "1 torch thread per process")


def _mup_attention_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The reference GPT's attention with the mup README's 1/d logit scale."""
    B, T, _ = x.shape

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)

    q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.mup_scale)
    return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


def _to_mup_package(model: nn.Module, spec: RunSpec, base_head_dim: int | None) -> nn.Module:
    """Swap the readout for ``mup.MuReadout`` and the attention scale for 1/d (in place)."""
    import mup

    p = spec.parametrization
    name = "lm_head" if hasattr(model, "lm_head") else "readout"
    old = getattr(model, name)
    readout = mup.MuReadout(old.in_features, old.out_features, bias=old.bias is not None,
                            readout_zero_init=bool(p.zero_readout), output_mult=float(p.output_mult))
    setattr(model, name, readout)
    for module in model.modules():
        if hasattr(module, "q_proj") and hasattr(module, "head_dim"):
            d0 = base_head_dim or module.head_dim
            module.mup_scale = float(p.attn_mult) * math.sqrt(d0) / module.head_dim
            module.forward = types.MethodType(_mup_attention_forward, module)
    return model


def mup_package_model(spec: RunSpec, task: Any) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model and optimizer of ``spec`` set up with the ``mup`` package (module docstring)."""
    import mup

    factory = make_factory(spec.model, task)
    base_width = spec.parametrization.base_width or spec.width
    with torch.device("meta"):
        base = factory(base_width)
        base_head_dim = next((m.head_dim for m in base.modules() if hasattr(m, "q_proj")), None)
        base = _to_mup_package(base, spec, base_head_dim)
        delta = _to_mup_package(factory(2 * base_width), spec, base_head_dim)
    torch.manual_seed(spec.seed)
    model = _to_mup_package(factory(spec.width), spec, base_head_dim)
    mup.set_base_shapes(model, base, delta=delta)
    if spec.parametrization.zero_query:
        for module in model.modules():
            if hasattr(module, "q_proj"):
                with torch.no_grad():
                    module.q_proj.weight.zero_()
    o = spec.optimizer
    if o.name == "sgd":
        opt = mup.MuSGD(model.parameters(), lr=float(o.lr), momentum=float(o.momentum),
                        weight_decay=float(o.weight_decay))
    else:
        opt = (mup.MuAdamW if o.name == "adamw" else mup.MuAdam)(
            model.parameters(), lr=float(o.lr), betas=(float(o.beta1), float(o.beta2)), eps=float(o.eps),
            weight_decay=float(o.weight_decay))
    return model, opt


@dataclass
class BenchRunner:
    """A check runner over a recipe with a third parametrization, ``mup_package``."""

    recipe: Recipe
    steps: int
    batch_size: int
    #: further parametrization names -> the recipe variant trained under μP for them (e.g. other gains)
    variants: dict[str, Recipe] = field(default_factory=dict)
    _inner: RecipeRunner = field(init=False, repr=False)
    _task: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._inner = RecipeRunner(self.recipe, steps=self.steps, batch_size=self.batch_size)
        self._variants = {k: RecipeRunner(r, steps=self.steps, batch_size=self.batch_size)
                          for k, r in self.variants.items()}

    @property
    def penalty(self) -> float:
        return self._inner.penalty

    def fingerprint(self) -> str:
        return self._inner.fingerprint() + "+mup_package-v1"

    def spec(self, width: int, seed: int, hps: dict[str, float], parametrization: str = "mup") -> RunSpec:
        return self.recipe.at(width, dict(hps), seed=seed, parametrization=parametrization, steps=self.steps,
                              batch_size=self.batch_size)

    def __call__(self, parametrization: str, width: int, seed: int, hps: dict[str, float],
                 report: Callable[[int, float], None] | None = None) -> TrainResult:
        """One run; ``report(step, loss)`` is the check's early-stopping hook (it may raise ``TrialPruned``)."""
        if parametrization in self._variants:
            return self._variants[parametrization]("mup", width, seed, hps, report=report)
        if parametrization != "mup_package":
            return self._inner(parametrization, width, seed, hps, report=report)
        spec = self.spec(width, seed, hps)
        if self._task is None:
            self._task = make_task(spec.task)
        model, opt = mup_package_model(spec, self._task)
        guard = DivergenceGuard(factor=spec.train.divergence_factor,
                                floor=float(getattr(self._task, "init_loss_bound", 0.0)))
        return train(model, opt, self._task, steps=self.steps, batch_size=self.batch_size, seed=seed,
                     schedule=make_schedule(spec), guard=guard, grad_clip=spec.optimizer.grad_clip, report=report)
