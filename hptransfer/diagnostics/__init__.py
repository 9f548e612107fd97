"""Diagnostics of set-ups known to break μTransfer, each with the reason, a citation and the fix.

:func:`diagnose` is run by ``hptransfer tune`` / ``run`` before the first trial and by
``hptransfer coord-check`` on a recipe; the warnings also go into ``summary.md``.
"""

from __future__ import annotations

from ._breakers import Diagnosis, diagnose

__all__ = ["diagnose", "Diagnosis"]
