"""The reference models (``mlp``, ``gpt``, ``cnn``); they live in :mod:`hptransfer.zoo.models`.

Kept importable as ``hptransfer.models`` because the README and docs use that path.
"""

from .zoo.models import *  # noqa: F403
from .zoo.models import __all__  # noqa: F401
