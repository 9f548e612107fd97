"""Transfer to the target width (``target.yaml``), loading it back, and the whole ``hptransfer run`` job.
"""

from __future__ import annotations

from ._job import RunResult, run
from ._target_file import TargetFile, read_target
from ._train import train_target
from ._transfer import Loaded, Target, load, transfer

__all__ = ["transfer", "load", "run", "Target", "Loaded", "RunResult", "TargetFile", "read_target", "train_target"]
