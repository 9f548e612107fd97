"""Hugging Face models (the ``hf`` extra, transformers >= 4.48): width fields of known configs,
``parametrize_config``, checkpoints that keep the scaling table, and a ``Trainer`` that trains μP.

Nothing here imports transformers at import time; :func:`hf_factory` (used by recipes that say
``model: {hf: llama, ...}``), :class:`Trainer` and :class:`ScalingTableCallback` do.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._config import WIDTH_FIELDS, config_factory, hf_factory, infer_width_fields, parametrize_config
from ._pretrained import from_pretrained, save_pretrained

__all__ = ["WIDTH_FIELDS", "infer_width_fields", "config_factory", "parametrize_config", "hf_factory",
           "save_pretrained", "from_pretrained", "Trainer", "ScalingTableCallback"]


def __getattr__(name: str) -> Any:
    if name in ("Trainer", "ScalingTableCallback"):  # subclasses of transformers' classes: import on use
        return getattr(importlib.import_module("._trainer", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
