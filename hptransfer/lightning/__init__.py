"""PyTorch Lightning (the ``lightning`` extra): :class:`ReportCallback` feeds a LightningModule's
training loss to the ``report(step, loss)`` that :func:`hptransfer.tune` hands a ``train_fn``, so a
LightningModule's trials are pruned and stopped on divergence like any other.

Nothing here imports Lightning at import time; :class:`ReportCallback` does. Optimizers need no
helper: return ``hptransfer.optimizer(...)`` (and ``hptransfer.lr_scheduler(...)``) from
``configure_optimizers`` (docs/integrations.md).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ReportCallback"]


def __getattr__(name: str) -> Any:
    if name == "ReportCallback":  # a subclass of Lightning's Callback: import on use
        return importlib.import_module("._callback", __name__).ReportCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
