"""The built-in offline tasks; they live in :mod:`hptransfer.zoo.tasks`.

Kept importable as ``hptransfer.tasks`` because the README and docs use that path.
"""

from .zoo.tasks import *  # noqa: F403
from .zoo.tasks import __all__  # noqa: F401
