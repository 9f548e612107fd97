"""``save_pretrained`` / ``from_pretrained`` that keep the scaling table.

A Hugging Face checkpoint holds the weights and the config, not hptransfer's forward hooks
(readout multiplier 1/m, attention factors), so a μP model reloaded with ``from_pretrained``
alone computes different logits. The table is written beside the weights as
``hptransfer_table.json`` and re-attached on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ParametrizationError
from ..parametrization import ScalingTable, attach_table, scaling_table
from ..parametrization._rewrite import attention_trace_pending
from ..parametrization._table import unwrap

__all__ = ["TABLE_FILE", "save_pretrained", "from_pretrained"]

TABLE_FILE = "hptransfer_table.json"


def save_pretrained(model: nn.Module, path: str | Path, **kwargs: Any) -> Path:
    """``model.save_pretrained(path, **kwargs)`` plus the scaling table as ``path/hptransfer_table.json``.

    Raises ParametrizationError when the model is not parametrized, or when its attention scaling
    is still waiting for the first forward (it would be missing from the saved table).
    """
    inner = unwrap(model)
    table = scaling_table(inner)
    if attention_trace_pending(inner):
        raise ParametrizationError(
            "the model's attention factors are traced on its first forward call, which has not happened, so the "
            "saved table would lack them. Fix: run one forward first, or parametrize with example_input=."
        )
    path = Path(path)
    inner.save_pretrained(str(path), **kwargs)  # type: ignore[operator]
    (path / TABLE_FILE).write_text(table.to_json())
    return path


def from_pretrained(model_cls: Any, path: str | Path, **kwargs: Any) -> nn.Module:
    """``model_cls.from_pretrained(path, **kwargs)`` with the saved scaling table re-attached.

    Raises ParametrizationError naming the file when ``path`` holds no table.
    """
    path = Path(path)
    table_file = path / TABLE_FILE
    if not table_file.is_file():
        raise ParametrizationError(
            f"{table_file} does not exist, so the μP forward multipliers of this checkpoint are unknown. Fix: save "
            "with hptransfer.hf.save_pretrained(model, path), or load with model_cls.from_pretrained for an SP model."
        )
    model = model_cls.from_pretrained(str(path), **kwargs)
    return attach_table(model, ScalingTable.from_dict(json.loads(table_file.read_text())))
