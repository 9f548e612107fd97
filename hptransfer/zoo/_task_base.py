"""The task interface and the helpers every built-in task shares (seeding, argument checks)."""

from __future__ import annotations

import hashlib
import math
import numbers
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DataError, TrainingError

__all__ = ["Task", "SPLITS", "as_logits", "derive_seed", "check_int", "model_device_dtype"]

SPLITS = ("train", "val")


def as_logits(output: Any) -> Tensor:
    """The logits in a model's output: the tensor itself, ``output.logits`` (Hugging Face model
    outputs) or ``output["logits"]``, else the first element of a tuple (``(logits, loss)``).

    Raises :class:`TrainingError` naming the output type and the fix for anything else.
    """
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, dict):
        logits = output.get("logits")
    if logits is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        logits = output[0]
    if not isinstance(logits, Tensor):
        raise TrainingError(
            f"the model returned {type(output).__name__}, which holds no logits tensor for the built-in task's "
            "loss. Fix: return the logits (a tensor, an object with .logits, or a tuple whose first item is "
            "the logits), or pass your own train_fn / loss_fn."
        )
    return logits


def derive_seed(*parts: object) -> int:
    """Hash ``parts`` into a 63-bit generator seed.

    Hashing (rather than e.g. ``seed * 1000 + step``) keeps seeds for neighbouring steps,
    splits and user seeds unrelated and collision-free in practice.
    """
    digest = hashlib.sha256("|".join(map(repr, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def check_int(owner: str, arg: str, value: object, minimum: int) -> int:
    # numbers.Integral admits numpy integers (e.g. from a sweep); bool is refused on purpose.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DataError(f"{owner}: argument '{arg}' must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
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
    #: Next-token prediction: the target at position t is the input at t + 1, so a model must not
    #: see later positions (checked before tuning by :func:`hptransfer.training._preflight.preflight`).
    causal: ClassVar[bool] = False

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
        step = check_int(owner, "step", step, 0)
        batch_size = check_int(owner, "batch_size", batch_size, 1)
        if split not in SPLITS:
            raise DataError(f"{owner}: argument 'split' is {split!r}; use one of {list(SPLITS)}.")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise DataError(f"{owner}: argument 'seed' must be an integer, got {seed!r}.")
        seed = int(seed)  # repr() of a numpy integer differs; normalise before hashing
        gen = torch.Generator(device="cpu")
        gen.manual_seed(derive_seed(self.name, split, seed, step, batch_size))
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

    @property
    def n_outputs(self) -> int:
        """Logits per example (classes, or the vocabulary of an LM task): ``exp(init_loss_bound)``."""
        return round(math.exp(self.init_loss_bound))

    def loss(self, output: Any, target: Tensor) -> Tensor:
        """Mean cross-entropy in nats; for ``(B, T, V)`` LM logits it is the mean over
        all ``B*T`` tokens. Computed in float32 so low-precision logits do not bias it.

        ``output`` is the model's forward result: a logits tensor, an object or mapping with
        ``logits`` (Hugging Face outputs), or a tuple/list whose first element is the logits
        (``return_dict=False``). Anything else, or logits whose last dimension is not
        :attr:`n_outputs`, raises :class:`DataError` saying what came back and the fix.
        """
        logits = as_logits(output)
        if logits.shape[-1] != self.n_outputs:
            raise DataError(
                f"the model's output has {logits.shape[-1]} logits per example (shape {tuple(logits.shape)}), but "
                f"task {self.name!r} has {self.n_outputs} classes. Fix: make the readout produce {self.n_outputs} "
                f"outputs (the task passes {self.model_kwargs()} to built-in factories; add the same to "
                "model.kwargs for your own).")
        return F.cross_entropy(logits.flatten(0, -2).float(), target.flatten())

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
        n_batches = check_int(f"{type(self).__name__}.eval_loss()", "n_batches", n_batches, 1)
        device, dtype = model_device_dtype(model)
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
