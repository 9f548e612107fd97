"""What the coordinate check trains: ``(point, seed) -> (model, optimizer)`` along width or depth, and its data.

Every model is built from a run spec by :func:`hptransfer.training.build` (the one build path), whether
the check came in through a recipe or through ``coord_check(factory, ...)``.

Along depth: one width, several depths (number of blocks). Under depth-μP and CompleteP
(shared/RULES.md, "Depth") each block adds a 1/L share to the residual stream, so neither a
branch's output nor an early block's output is a Θ(1) coordinate as the model gets deeper (block 1
of 16 is not block 1 of 2); the check along depth fits the modules outside the block stack --
embeddings, the final norm (whose input is the whole stream), the readout and the model output --
which must stay Θ(1) in activation and update. Names with a numeric part (anything in a block) are
left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import CoordCheckError
from ..recipe import RunSpec
from ..training import build

__all__ = ["along_depth", "stream_modules", "builder", "FnTask"]

Maker = Callable[[int, int], tuple[nn.Module, Any]]


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


def builder(spec: RunSpec, task: Any, example_input: Any, device: torch.device, *,
            depths: Sequence[int] | None = None, width: int | None = None, base_depth: int | None = None) -> Maker:
    """``(point, seed) -> (model, optimizer)``: the spec at width ``point`` (or, with ``depths``, at depth
    ``point`` and width ``width``) and seed ``seed``, built by :func:`hptransfer.training.build`."""
    extra = {"example_input": example_input}

    def make(point: int, seed: int) -> tuple[nn.Module, Any]:
        if depths is None:
            s = spec.replace(width=int(point), seed=seed)
        else:
            p = spec.parametrization
            base = (p.base_depth if p is not None else None) or base_depth or min(depths)
            s = spec.replace(width=int(width or spec.width), depth=int(point), seed=seed,
                             **{"parametrization.base_depth": int(base)})
        b = build(s, task=task, device=device, parametrize_extra=extra, role="coordinate-check")
        return b.model, b.optimizer
    return make


class FnTask:
    """The check's data and loss: a task's, with ``batch_fn(step) -> (input, target)`` (the same batches for
    every seed) and ``loss_fn(output, target)`` in their place where given."""

    def __init__(self, task: Any, batch_fn: Callable[[int], tuple[Any, Any]] | None,
                 loss_fn: Callable[[Any, Any], Any] | None) -> None:
        self.task, self.batch_fn, self.loss_fn = task, batch_fn, loss_fn

    @property
    def has_example(self) -> bool:
        return self.task is not None

    def batch(self, step: int, batch_size: int, *, split: str = "train", seed: int = 0) -> tuple[Any, Any]:
        if self.batch_fn is not None:
            return self.batch_fn(step)
        if split == "train":
            return self.task.batch(step, batch_size, seed=seed)
        return self.task.batch(step, batch_size, split=split, seed=seed)

    def loss(self, output: Any, target: Any) -> Any:
        return (self.loss_fn or self.task.loss)(output, target)

    def example_input(self, batch_size: int = 2) -> Any:
        return self.task.example_input(batch_size)

    def model_kwargs(self) -> dict[str, Any]:
        """The task's sizes for a built-in model (none without a task)."""
        return self.task.model_kwargs() if hasattr(self.task, "model_kwargs") else {}
