"""Built-in tasks: small, offline, deterministic learning problems.

A task serves batches, a loss and a validation loss. Every batch is a pure function of
``(task settings, step, batch_size, split, seed)``: it is drawn from a ``torch.Generator``
seeded from those values, so any worker, thread or process gets identical data for the
same step without sharing state. Datasets are built lazily on first use and cached on the
instance (the cache is dropped when pickling: it is cheap to rebuild and deterministic).

Losses are mean cross-entropy in nats.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import sysconfig
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hptransfer.errors import DataError

__all__ = [
    "STDLIB_FILES",
    "TASKS",
    "CharLMTask",
    "ClassificationTask",
    "ImageClassificationTask",
    "Task",
    "get_task",
]

_SPLITS = ("train", "val")


def _derive_seed(*parts: object) -> int:
    """Hash ``parts`` into a 63-bit generator seed.

    Hashing (rather than e.g. ``seed * 1000 + step``) keeps seeds for neighbouring steps,
    splits and user seeds unrelated and collision-free in practice.
    """
    digest = hashlib.sha256("|".join(map(repr, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _check_int(owner: str, arg: str, value: object, minimum: int) -> int:
    # numbers.Integral admits numpy integers (e.g. from a sweep); bool is refused on purpose.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DataError(f"{owner}: argument '{arg}' must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    for p in model.parameters():
        return p.device, (p.dtype if p.is_floating_point() else None)
    return torch.device("cpu"), None


class Task(ABC):
    """Base class of the built-in tasks.

    Subclasses set :attr:`name`, :attr:`eval_batch_size` and :attr:`eval_n_batches` and
    implement :meth:`_make_batch`, :meth:`example_input`, :meth:`model_kwargs` and
    :attr:`init_loss_bound`.
    """

    name: ClassVar[str] = "task"
    eval_batch_size: ClassVar[int] = 64
    eval_n_batches: ClassVar[int] = 8

    # ---- data ----------------------------------------------------------------------

    def batch(self, step: int, batch_size: int, *, split: str = "train", seed: int = 0) -> tuple[Tensor, Tensor]:
        """Return ``(inputs, targets)`` on CPU for training step ``step``.

        Deterministic in ``(step, batch_size, split, seed)`` and the task's settings;
        a different step, split or seed gives a different batch.

        Args:
            step: 0-based step index, >= 0.
            batch_size: examples (sequences for LM tasks) per batch, >= 1.
            split: ``"train"`` (default) or ``"val"``.
            seed: user seed that selects a different but equally fixed data order;
                default 0.

        Raises:
            DataError: bad step, batch size or split.
        """
        owner = f"{type(self).__name__}.batch()"
        step = _check_int(owner, "step", step, 0)
        batch_size = _check_int(owner, "batch_size", batch_size, 1)
        if split not in _SPLITS:
            raise DataError(f"{owner}: argument 'split' is {split!r}; use one of {list(_SPLITS)}.")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise DataError(f"{owner}: argument 'seed' must be an integer, got {seed!r}.")
        seed = int(seed)  # repr() of a numpy integer differs; normalise before hashing
        gen = torch.Generator(device="cpu")
        gen.manual_seed(_derive_seed(self.name, split, seed, step, batch_size))
        return self._make_batch(gen, batch_size, split)

    @abstractmethod
    def _make_batch(self, gen: torch.Generator, batch_size: int, split: str) -> tuple[Tensor, Tensor]:
        """Draw one batch using only ``gen`` as the source of randomness."""

    @abstractmethod
    def example_input(self, batch_size: int = 2) -> Tensor:
        """A small CPU input of the right shape and dtype, for shape tracing."""

    @abstractmethod
    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments a reference factory needs to match this task."""

    @property
    @abstractmethod
    def init_loss_bound(self) -> float:
        """Loss in nats of the uniform predictor, ``ln(number of outputs)``."""

    # ---- loss ----------------------------------------------------------------------

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy in nats; for ``(B, T, V)`` LM logits it is the mean over
        all ``B*T`` tokens. Computed in float32 so low-precision logits do not bias it."""
        return F.cross_entropy(output.flatten(0, -2).float(), target.flatten())

    def eval_loss(
        self,
        model: nn.Module,
        *,
        batch_size: int | None = None,
        n_batches: int | None = None,
        seed: int = 0,
    ) -> float:
        """Mean validation loss (nats) of ``model`` over fixed validation batches.

        Runs under ``torch.no_grad()`` with the model in eval mode; the model's previous
        train/eval mode is restored afterwards. Inputs are moved to the device (and, for
        float inputs, the dtype) of the model's first parameter.

        Args:
            model: the model to evaluate.
            batch_size: validation examples per batch; default :attr:`eval_batch_size`.
            n_batches: validation batches (steps ``0..n_batches-1`` of the ``"val"``
                split); default :attr:`eval_n_batches`.
            seed: which fixed set of validation batches; default 0.
        """
        batch_size = self.eval_batch_size if batch_size is None else batch_size
        n_batches = self.eval_n_batches if n_batches is None else n_batches
        n_batches = _check_int(f"{type(self).__name__}.eval_loss()", "n_batches", n_batches, 1)
        device, dtype = _model_device_dtype(model)
        was_training = model.training
        model.eval()
        total = 0.0
        try:
            with torch.no_grad():
                for step in range(n_batches):
                    x, y = self.batch(step, batch_size, split="val", seed=seed)
                    x = x.to(device=device, dtype=dtype if x.is_floating_point() else None)
                    total += float(self.loss(model(x), y.to(device)))
        finally:
            model.train(was_training)
        # Batches have equal size, so the mean of batch means is the per-example mean.
        return total / n_batches

    # ---- pickling ------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # Cached datasets are deterministic and cheap to rebuild; do not ship them to
        # worker processes.
        state = dict(self.__dict__)
        state["_cache"] = None
        return state


# ------------------------------------------------------------------------------------
# Classification
# ------------------------------------------------------------------------------------


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
        _check_int(owner, "d_in", self.d_in, 1)
        _check_int(owner, "n_classes", self.n_classes, 2)
        _check_int(owner, "n_train", self.n_train, 1)
        _check_int(owner, "n_val", self.n_val, 1)
        _check_int(owner, "data_seed", self.data_seed, 0)
        _check_int(owner, "teacher_width", self.teacher_width, 1)
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
        _check_int("ImageClassificationTask", "channels", self.channels, 1)
        _check_int("ImageClassificationTask", "image_size", self.image_size, 1)
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


# ------------------------------------------------------------------------------------
# Byte-level language modelling on the standard library's source
# ------------------------------------------------------------------------------------

STDLIB_FILES: tuple[str, ...] = (
    "argparse.py",
    "collections/__init__.py",
    "textwrap.py",
    "difflib.py",
    "string.py",
    "fractions.py",
    "heapq.py",
    "bisect.py",
    "json/decoder.py",
    "json/encoder.py",
    "csv.py",
    "shlex.py",
    "calendar.py",
    "ast.py",
    "functools.py",
    "dataclasses.py",
    "enum.py",
    "inspect.py",
    "typing.py",
    # pathlib.py is deliberately absent: it became a package (pathlib/__init__.py) in 3.13.
    "tokenize.py",
    "pprint.py",
    "configparser.py",
    "statistics.py",
)
"""Pure-Python stdlib modules (relative to the stdlib directory) present in CPython
3.9-3.13, concatenated in this order to form the :class:`CharLMTask` corpus."""

_SEPARATOR = b"\n\n# ======== %s ========\n\n"


@dataclass
class CharLMTask(Task):
    """Byte-level language modelling (vocabulary 256) on CPython standard-library source.

    The corpus is the files in :data:`STDLIB_FILES`, read from ``source_dir`` (default:
    this interpreter's stdlib, ``sysconfig.get_paths()["stdlib"]``), each preceded by a
    separator line naming it, concatenated and cut to ``n_bytes``. The first
    ``1 - val_fraction`` of the bytes are the train split, the rest the val split. Batches
    are random windows: inputs ``data[i:i+T]``, targets ``data[i+1:i+T+1]``.

    The exact bytes depend on the Python version; :attr:`data_fingerprint` records them.

    Args:
        block_size: tokens per sequence ``T``; default 64.
        n_bytes: cap on the corpus size in bytes; default 1_500_000 (more than the
            ~1 MB of the listed files, so all of them are used).
        val_fraction: fraction of the corpus (its tail) used for validation, in (0, 1);
            default 0.1.
        source_dir: directory holding the files; default None (the stdlib).

    :meth:`eval_loss` defaults to 8 batches of 32 windows (16,384 target tokens).
    """

    name: ClassVar[str] = "charlm"
    vocab_size: ClassVar[int] = 256
    eval_batch_size: ClassVar[int] = 32
    eval_n_batches: ClassVar[int] = 8

    block_size: int = 64
    n_bytes: int = 1_500_000
    val_fraction: float = 0.1
    source_dir: str | None = None
    _cache: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "CharLMTask"
        _check_int(owner, "block_size", self.block_size, 1)
        _check_int(owner, "n_bytes", self.n_bytes, 1)
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise DataError(f"{owner}: argument 'val_fraction' must be in (0, 1), got {self.val_fraction!r}.")

    def _root(self) -> Path:
        return Path(self.source_dir if self.source_dir is not None else sysconfig.get_paths()["stdlib"])

    def _load_corpus(self) -> bytes:
        root = self._root()
        missing = [rel for rel in STDLIB_FILES if not (root / rel).is_file()]
        if missing:
            raise DataError(
                f"CharLMTask: source file(s) missing from {root}: {', '.join(missing)}; "
                "the byte-level LM task needs a full CPython standard library (some distro "
                "builds split it into extra packages) or pass 'source_dir' to a directory "
                "that has these files."
            )
        parts = [(_SEPARATOR % rel.encode()) + (root / rel).read_bytes() for rel in STDLIB_FILES]
        return b"".join(parts)[: self.n_bytes]

    def _data(self) -> dict[str, Any]:
        if self._cache is None:
            raw = self._load_corpus()
            n_val = int(len(raw) * self.val_fraction)
            n_train = len(raw) - n_val
            # A window needs block_size + 1 bytes (targets are shifted by one).
            need = self.block_size + 1
            if min(n_train, n_val) < need:
                raise DataError(
                    f"CharLMTask: with n_bytes={self.n_bytes} and "
                    f"val_fraction={self.val_fraction} a split has {min(n_train, n_val)} "
                    f"bytes, fewer than block_size + 1 = {need}; raise 'n_bytes' or lower "
                    "'block_size'."
                )
            data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            self._cache = {
                "train": data[:n_train].clone(),
                "val": data[n_train:].clone(),
                "fingerprint": hashlib.sha256(raw).hexdigest()[:16],
            }
        return self._cache

    @property
    def data_fingerprint(self) -> str:
        """First 16 hex characters of the sha256 of the full corpus (train + val bytes)."""
        return str(self._data()["fingerprint"])

    @property
    def n_train_bytes(self) -> int:
        """Bytes in the train split."""
        return int(self._data()["train"].numel())

    @property
    def n_val_bytes(self) -> int:
        """Bytes in the val split."""
        return int(self._data()["val"].numel())

    def _make_batch(self, gen: torch.Generator, batch_size: int, split: str) -> tuple[Tensor, Tensor]:
        data = self._data()[split]
        T = self.block_size
        starts = torch.randint(0, data.numel() - T, (batch_size, 1), generator=gen)
        windows = data[starts + torch.arange(T + 1)].long()
        return windows[:, :-1], windows[:, 1:]

    def example_input(self, batch_size: int = 2) -> Tensor:
        """LongTensor ``(batch_size, block_size)`` of fixed byte values."""
        gen = torch.Generator(device="cpu")
        gen.manual_seed(0)
        return torch.randint(0, self.vocab_size, (batch_size, self.block_size), generator=gen)

    def model_kwargs(self) -> dict[str, Any]:
        """``{"vocab_size": 256, "block_size": block_size}`` for :func:`hptransfer.models.gpt`."""
        return {"vocab_size": self.vocab_size, "block_size": self.block_size}

    @property
    def init_loss_bound(self) -> float:
        """``ln(256)`` = 5.545 nats."""
        return math.log(self.vocab_size)


# ------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------

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
