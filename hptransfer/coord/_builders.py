"""Model builders of the coordinate check: ``(point, seed) -> (model, optimizer)`` along width or depth.

Along depth: one width, several depths (number of blocks). Under depth-μP and CompleteP
(shared/RULES.md, "Depth") each block adds a 1/L share to the residual stream, so neither a
branch's output nor an early block's output is a Θ(1) coordinate as the model gets deeper (block 1
of 16 is not block 1 of 2); the check along depth fits the modules outside the block stack --
embeddings, the final norm (whose input is the whole stream), the readout and the model output --
which must stay Θ(1) in activation and update. Names with a numeric part (anything in a block) are
left out.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import CoordCheckError
from ..parametrization import OPTIMIZERS, optimizer_class, optimizer_family, param_groups, parametrize
from ..recipe import RunSpec
from ..training import build

__all__ = ["along_depth", "depth_builder", "stream_modules", "make_builder", "make_optimizer", "optimizer_class_of",
           "optimizer_kwargs_for", "GROUP_KWARGS"]

Maker = Callable[[float, int], tuple[nn.Module, Any]]


def along_depth(widths: Sequence[float], depths: Sequence[int]) -> tuple[int, list[int]]:
    """``(width, sorted depths)``; a sweep along depth holds the width fixed (exactly one)."""
    ws = sorted({int(w) for w in widths})
    if len(ws) != 1:
        raise CoordCheckError(f"a coordinate check along depth holds the width fixed, got widths={list(widths)}. "
                              "Fix: pass one width, e.g. widths=[64], depths=[2, 4, 8, 16].")
    return ws[0], sorted({int(d) for d in depths})


def stream_modules(order: list[str]) -> list[str]:
    """The module names the depth check fits: those outside the block stack (no numeric name part)."""
    return [m for m in order if not any(p.split("#")[0].isdigit() for p in m.split("."))]


def depth_builder(spec: RunSpec | None, factory: Any, width: int, *, base_width: float | None,
                  base_depth: int, parametrization: Any, example_input: Any, options: dict[str, Any],
                  opt_cls: type, opt_name: str, lr: float, device: torch.device, task: Any,
                  opt_kwargs: dict[str, Any]) -> Maker:
    """``(depth, seed) -> (model, optimizer)`` at ``width``: through ``training.build`` for a spec, else
    :func:`hptransfer.parametrize` with ``depth=``/``base_depth=`` on a ``(width, depth)`` factory."""
    if spec is not None:
        built_task = task if hasattr(task, "model_kwargs") else None
        p = spec.parametrization

        def make_spec(depth: float, seed: int) -> tuple[nn.Module, Any]:
            s = spec.replace(width=width, depth=int(depth), seed=seed,
                             **{"parametrization.base_depth": p.base_depth or base_depth})
            b = build(s, task=built_task, device=device, parametrize_extra={"example_input": example_input},
                      role="coordinate-check")
            return b.model, b.optimizer
        return make_spec

    def make(depth: float, seed: int) -> tuple[nn.Module, Any]:
        torch.manual_seed(seed)
        model = parametrize(factory, width=width, base_width=base_width or width, depth=int(depth),
                            base_depth=base_depth, parametrization=parametrization, example_input=example_input,
                            **options).to(device)
        return model, make_optimizer(model, opt_cls, opt_name, lr, opt_kwargs)
    return make


#: ``optimizer_kwargs`` that go to :func:`~hptransfer.param_groups` (μP-aware); the rest go to the optimizer class.
GROUP_KWARGS = ("weight_decay", "weight_decay_mode", "decay", "eps", "scale_eps", "muon_lr")


def make_optimizer(model: nn.Module, opt_cls: type, opt_name: str, lr: float, kwargs: dict[str, Any]) -> Any:
    """The check's optimizer: μP groups from :func:`~hptransfer.param_groups` (weight decay, eps and their
    modes among ``kwargs``), the other ``kwargs`` (betas, momentum...) given to ``opt_cls``."""
    groups = param_groups(model, lr=lr, optimizer=opt_name, **{k: v for k, v in kwargs.items() if k in GROUP_KWARGS})
    # eps also goes to the class: param_groups sets a per-group eps only with scale_eps (as hptransfer.optimizer)
    return opt_cls(groups, lr=lr, **{k: v for k, v in kwargs.items() if k not in GROUP_KWARGS or k == "eps"})


def make_builder(spec: RunSpec | None, factory: Any, task: Any, widths: Sequence[float], points: list[float], *,
                 depths: Sequence[int] | None, base_width: float | None, base_depth: int | None,
                 parametrization: Any, example_input: Any, options: dict[str, Any], opt_cls: type, opt_name: str,
                 lr: float, device: torch.device, opt_kwargs: dict[str, Any]) -> Maker:
    """The builder of :func:`hptransfer.coord_check`: along depth when ``depths`` is given, else along width
    (``points`` are the validated widths or depths)."""
    if depths is not None:
        width, _ = along_depth(widths, depths)
        return depth_builder(spec, factory, width, base_width=base_width, base_depth=base_depth or int(points[0]),
                             parametrization=parametrization, example_input=example_input, options=options,
                             opt_cls=opt_cls, opt_name=opt_name, lr=lr, device=device, task=task,
                             opt_kwargs=opt_kwargs)
    if spec is not None:
        return _spec_builder(spec, task, example_input, device)
    return _factory_builder(factory, float(base_width) if base_width is not None else points[0], parametrization,
                            example_input, options, opt_cls, opt_name, lr, device, opt_kwargs)


def _factory_builder(factory: Callable[..., nn.Module], base: float, parametrization: Any, example_input: Any,
                     options: dict[str, Any], opt_cls: type[torch.optim.Optimizer], opt_name: str, lr: float,
                     device: torch.device, opt_kwargs: dict[str, Any]
                     ) -> Callable[[float, int], tuple[nn.Module, torch.optim.Optimizer]]:
    """``(width, seed) -> (model, optimizer)`` from a factory and ``parametrize`` options."""
    def make(width: float, seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(seed)
        model = parametrize(factory, width=width, base_width=base, parametrization=parametrization,
                            example_input=example_input, **options).to(device)
        return model, make_optimizer(model, opt_cls, opt_name, lr, opt_kwargs)
    return make


def _spec_builder(spec: RunSpec, task: Any, example_input: Any, device: torch.device
                  ) -> Callable[[float, int], tuple[nn.Module, torch.optim.Optimizer]]:
    """``(width, seed) -> (model, optimizer)`` through the one build path (``training.build``)."""
    built_task = task if hasattr(task, "model_kwargs") else None  # a built-in task object, reused

    def make(width: float, seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        b = build(spec.replace(width=int(width), seed=seed), task=built_task, device=device,
                  parametrize_extra={"example_input": example_input}, role="coordinate-check")
        return b.model, b.optimizer
    return make


def optimizer_class_of(optimizer: str | type[torch.optim.Optimizer]) -> tuple[type[torch.optim.Optimizer], str]:
    """Map an optimizer name or class to (class, name or family for ``param_groups``)."""
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer, optimizer_family(optimizer)
    key = str(optimizer).lower()
    if key not in OPTIMIZERS:
        raise CoordCheckError(
            f"optimizer={optimizer!r} is not supported by coord_check. Fix: use one of {', '.join(OPTIMIZERS)} "
            "or pass a torch.optim.Optimizer subclass."
        )
    return optimizer_class(key), key


def optimizer_kwargs_for(kwargs: Mapping[str, Any] | None, opt_cls: type, spec: RunSpec | None) -> dict[str, Any]:
    """``optimizer_kwargs`` checked against what ``param_groups`` and ``opt_cls`` take."""
    kwargs = dict(kwargs or {})
    if kwargs and spec is not None:
        raise CoordCheckError("optimizer_kwargs cannot be combined with a run spec. Fix: set them in the spec's "
                              "optimizer section (spec.replace(...)).")
    takes = set(inspect.signature(opt_cls.__init__).parameters) | set(GROUP_KWARGS)
    unknown = sorted(set(kwargs) - takes)
    if unknown:
        raise CoordCheckError(f"optimizer_kwargs {unknown} are not options of {opt_cls.__name__} or param_groups. "
                              f"Fix: use some of {sorted(takes - {'self', 'params', 'lr'})}.")
    return kwargs
