"""Byte-level language modelling on the Python standard library's own source (shipped with every Python)."""

from __future__ import annotations

import hashlib
import math
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import DataError
from ._task_base import Task, check_int

__all__ = ["CharLMTask", "STDLIB_FILES"]


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
    causal: ClassVar[bool] = True
    eval_batch_size: ClassVar[int] = 32
    eval_n_batches: ClassVar[int] = 8

    block_size: int = 64
    n_bytes: int = 1_500_000
    val_fraction: float = 0.1
    source_dir: str | None = None
    _cache: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "CharLMTask"
        check_int(owner, "block_size", self.block_size, 1)
        check_int(owner, "n_bytes", self.n_bytes, 1)
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
        # Contiguous copies: user models written like nanoGPT call targets.view(-1).
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

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
