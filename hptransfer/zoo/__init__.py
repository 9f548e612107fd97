"""Reference models and built-in offline tasks (also importable as ``hptransfer.models`` and ``hptransfer.tasks``).
"""

from __future__ import annotations

from .models import cnn, get_model, gpt, mlp, resglu
from .tasks import Task, get_task

__all__ = ["mlp", "gpt", "cnn", "resglu", "get_model", "Task", "get_task"]
