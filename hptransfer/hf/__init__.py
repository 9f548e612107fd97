"""Hugging Face models (the ``hf`` extra, transformers >= 4.40): width fields of known configs,
``parametrize_config``, and checkpoints that keep the scaling table.

Nothing here imports transformers at import time; :func:`hf_factory` (used by recipes that say
``model: {hf: llama, ...}``) does.
"""

from __future__ import annotations

from ._config import WIDTH_FIELDS, config_factory, hf_factory, infer_width_fields, parametrize_config
from ._pretrained import from_pretrained, save_pretrained

__all__ = ["WIDTH_FIELDS", "infer_width_fields", "config_factory", "parametrize_config", "hf_factory",
           "save_pretrained", "from_pretrained"]
