"""Transfer to the target width (``target.yaml``), loading it back, and the whole ``hptransfer run`` job."""

from __future__ import annotations

from ._drift import FIT_FORMS, DriftFit, drift_shift, fit_coefficient, fit_drift
from ._job import BEAT_TOLERANCE, RunResult, edge_warnings, run
from ._target_file import TARGET_SCHEMA, TargetFile, read_target, write_target
from ._train import CHECKPOINT_VERSION, ShardedTask, train_target
from ._transfer import LAW_CITATIONS, Loaded, Target, law_factor, load, transfer

__all__ = ["transfer", "load", "run", "Target", "Loaded", "RunResult", "TargetFile", "read_target", "write_target",
           "TARGET_SCHEMA", "DriftFit", "fit_drift", "FIT_FORMS", "drift_shift", "fit_coefficient", "LAW_CITATIONS",
           "law_factor", "BEAT_TOLERANCE", "edge_warnings",
           "train_target", "ShardedTask", "CHECKPOINT_VERSION"]
