"""Optuna plumbing shared by tuning and the check: storages, local worker processes, progress display.

A journal file is the embedded default; ``postgresql://`` URLs serve many machines.
"""

from __future__ import annotations

from ._storage import load_study, storage_url

__all__ = ["load_study", "storage_url"]
