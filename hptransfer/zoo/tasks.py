"""Built-in tasks: small, offline, deterministic learning problems.

A task serves batches, a loss and a validation loss. Every batch is a pure function of
``(task settings, step, batch_size, split, seed)``: it is drawn from a ``torch.Generator``
seeded from those values, so any worker, thread or process gets identical data for the
same step without sharing state. Datasets are built lazily on first use and cached on the
instance (the cache is dropped when pickling: it is cheap to rebuild and deterministic).

Losses are mean cross-entropy in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import DataError
from ._charlm import STDLIB_FILES, CharLMTask
from ._task_base import Task, check_int

__all__ = [
    "STDLIB_FILES",
    "TASKS",
    "CharLMTask",
    "ClassificationTask",
    "ImageClassificationTask",
    "Task",
    "get_task",
]

@dataclass
class ClassificationTask(Task):
    """Teacher-student classification on Gaussian inputs.

    Inputs ``x ~ N(0, I_d_in)``; labels are the argmax of a fixed random teacher
    ``tanh(x W1) W2`` (``teacher_width`` hidden units), with a fraction ``noise`` of
    labels replaced by uniformly random classes. The train set is finite (``n_train``
    examples, batches sample from it), so long runs can overfit like real data.

    Args:
        d_in: input features; default 32.
        n_classes: classes; default 10.
        n_train: training examples; default 8192.
        n_val: validation examples; default 2048.
        data_seed: seed for inputs, teacher and label noise; default 1234.
        teacher_width: hidden units of the teacher; default 64.
        noise: fraction of labels resampled uniformly, in [0, 1); default 0.05.

    :meth:`eval_loss` defaults to 4 batches of 512 examples drawn from the val set.
    """

    name: ClassVar[str] = "classification"
    eval_batch_size: ClassVar[int] = 512
    eval_n_batches: ClassVar[int] = 4

    d_in: int = 32
    n_classes: int = 10
    n_train: int = 8192
    n_val: int = 2048
    data_seed: int = 1234
    teacher_width: int = 64
    noise: float = 0.05
    _cache: dict[str, Tensor] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "ClassificationTask"
        check_int(owner, "d_in", self.d_in, 1)
        check_int(owner, "n_classes", self.n_classes, 2)
        check_int(owner, "n_train", self.n_train, 1)
        check_int(owner, "n_val", self.n_val, 1)
        check_int(owner, "data_seed", self.data_seed, 0)
        check_int(owner, "teacher_width", self.teacher_width, 1)
        if not 0.0 <= float(self.noise) < 1.0:
            raise DataError(f"{owner}: argument 'noise' must be in [0, 1), got {self.noise!r}.")

    def _data(self) -> dict[str, Tensor]:
        if self._cache is None:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(self.data_seed)
            n = self.n_train + self.n_val
            # Unit-variance pre-activations keep tanh in its nonlinear range; equal-norm,
            # bias-free readout columns give every class a similar share of the labels.
            w1 = torch.randn(self.d_in, self.teacher_width, generator=gen)
            w1 /= math.sqrt(self.d_in)
            w2 = torch.randn(self.teacher_width, self.n_classes, generator=gen)
            w2 /= w2.norm(dim=0)
            x = torch.randn(n, self.d_in, generator=gen)
            y = (torch.tanh(x @ w1) @ w2).argmax(dim=1)
            flip = torch.rand(n, generator=gen) < self.noise
            y = torch.where(flip, torch.randint(0, self.n_classes, (n,), generator=gen), y)
            self._cache = {
                "train_x": x[: self.n_train].contiguous(),
                "train_y": y[: self.n_train].contiguous(),
                "val_x": x[self.n_train :].contiguous(),
                "val_y": y[self.n_train :].contiguous(),
            }
        return self._cache

    def _make_batch(self, gen: torch.Generator, batch_size: int, split: str) -> tuple[Tensor, Tensor]:
        data = self._data()
        xs, ys = data[f"{split}_x"], data[f"{split}_y"]
        n = xs.shape[0]
        # Without replacement inside a batch when possible, like a shuffled epoch.
        if batch_size <= n:
            idx = torch.randperm(n, generator=gen)[:batch_size]
        else:
            idx = torch.randint(0, n, (batch_size,), generator=gen)
        return xs[idx], ys[idx]

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Float tensor ``(batch_size, d_in)`` of fixed standard-normal values."""
        gen = torch.Generator(device="cpu")
        gen.manual_seed(0)
        return torch.randn(batch_size, self.d_in, generator=gen)

    def model_kwargs(self) -> dict[str, Any]:
        """``{"d_in": d_in, "n_classes": n_classes}`` for :func:`hptransfer.models.mlp`."""
        return {"d_in": self.d_in, "n_classes": self.n_classes}

    @property
    def init_loss_bound(self) -> float:
        """``ln(n_classes)`` nats (2.303 for 10 classes)."""
        return math.log(self.n_classes)


@dataclass
class ImageClassificationTask(ClassificationTask):
    """:class:`ClassificationTask` with its inputs viewed as ``(channels, image_size, image_size)``
    images (``d_in`` is set to ``channels * image_size**2``), for the reference CNN.

    Same data, labels and loss; only the layout differs.
    """

    name: ClassVar[str] = "images"

    channels: int = 3
    image_size: int = 8

    def __post_init__(self) -> None:
        check_int("ImageClassificationTask", "channels", self.channels, 1)
        check_int("ImageClassificationTask", "image_size", self.image_size, 1)
        self.d_in = self.channels * self.image_size**2
        super().__post_init__()

    def _make_batch(self, gen: torch.Generator, batch_size: int, split: str) -> tuple[Tensor, Tensor]:
        x, y = super()._make_batch(gen, batch_size, split)
        return x.view(-1, self.channels, self.image_size, self.image_size), y

    def example_input(self, batch_size: int = 2) -> Tensor:
        return super().example_input(batch_size).view(-1, self.channels, self.image_size, self.image_size)

    def model_kwargs(self) -> dict[str, Any]:
        """``{"in_channels", "n_classes", "image_size"}`` for :func:`hptransfer.models.cnn`."""
        return {"in_channels": self.channels, "n_classes": self.n_classes, "image_size": self.image_size}


TASKS: dict[str, type[Task]] = {
    "classification": ClassificationTask,
    "images": ImageClassificationTask,
    "charlm": CharLMTask,
}
"""Built-in task classes by name, as used in recipes."""


def get_task(name: str, **kwargs: Any) -> Task:
    """Instantiate the built-in task ``name`` with ``kwargs``.

    Raises:
        DataError: unknown task name (the message lists the known names), an unknown
            keyword argument (the message lists the accepted ones), or a bad value.
    """
    try:
        cls = TASKS[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown task {name!r}; known built-in tasks are: {', '.join(sorted(TASKS))}.") from None
    accepted = [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise DataError(
            f"task {name!r} got unknown argument(s) {', '.join(unknown)}; "
            f"accepted arguments are: {', '.join(accepted)}."
        )
    return cls(**kwargs)
