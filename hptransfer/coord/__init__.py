"""The coordinate check: activation and update sizes against width, with a verdict.

:func:`coord_check` trains a few steps at several widths (from a factory or a run spec) and
fits, per module and step, the slope of mean |h| and mean |h_t - h_0| against width.
"""

from __future__ import annotations

from ._coord import COORD_LR, COORD_OPTIMIZER, DEFAULT_TOL_GROW, DEFAULT_TOL_VANISH, coord_check
from ._result import CoordCheckResult

__all__ = ["coord_check", "CoordCheckResult", "DEFAULT_TOL_GROW", "DEFAULT_TOL_VANISH", "COORD_LR",
           "COORD_OPTIMIZER"]
