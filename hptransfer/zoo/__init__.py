"""Reference models and built-in offline tasks (also importable as ``hptransfer.models`` and ``hptransfer.tasks``)."""

from __future__ import annotations

from ._task_base import as_logits
from .models import CNN, GPT, MLP, MODELS, ResGLU, cnn, get_model, gpt, mlp, resglu
from .tasks import TASKS, CharLMTask, ClassificationTask, ImageClassificationTask, Task, get_task

__all__ = ["mlp", "gpt", "cnn", "resglu", "MLP", "GPT", "CNN", "ResGLU", "MODELS", "get_model", "Task",
           "ClassificationTask",
           "ImageClassificationTask", "CharLMTask", "TASKS", "get_task", "as_logits"]
