"""Argument checks of :func:`hptransfer.parametrize`: widths and depths."""

from __future__ import annotations

import math
from typing import Any

from ..errors import ParametrizationError

__all__ = ["check_widths", "check_width", "check_depths"]


def check_widths(width: Any, base_width: Any, probe_width: Any, attention: str) -> tuple[float, float, float]:
    """Validated ``(width, base_width, probe_width)``; the probe defaults to twice the base width."""
    width, base_width = check_width("width", width), check_width("base_width", base_width)
    probe_width = check_width("probe_width", probe_width if probe_width is not None else 2 * base_width)
    if probe_width == base_width:
        raise ParametrizationError("probe_width must differ from base_width. Fix: leave probe_width unset.")
    if attention not in ("auto", "off"):
        raise ParametrizationError(f"attention={attention!r} is not an option. Fix: use 'auto' or 'off'.")
    return width, base_width, probe_width


def check_width(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParametrizationError(f"{name}={value!r} is not a number. Fix: pass a positive width.") from None
    if not (v > 0 and math.isfinite(v)):
        raise ParametrizationError(f"{name}={value!r} must be a positive finite number.")
    return v


def check_depths(rule: Any, depth: Any, base_depth: Any, branches: Any) -> tuple[int | None, int | None]:
    """Validated ``(depth, base_depth)``; ``base_depth`` defaults to ``depth``."""
    if depth is None:
        if rule.depth_alpha is not None or base_depth is not None or branches:
            raise ParametrizationError(
                f"parametrization {rule.name!r} / base_depth / branches need the depth axis, and depth= was not "
                "given. Fix: pass depth= and base_depth= with a factory called as factory(width, depth)."
            )
        return None, None
    if branches and rule.depth_alpha is None:
        raise ParametrizationError(
            f"branches= names residual branches to scale, which parametrization {rule.name!r} does not do. "
            "Fix: use 'depth-mup' or 'completep', or drop branches=."
        )
    out = []
    for name, value in (("depth", depth), ("base_depth", depth if base_depth is None else base_depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParametrizationError(f"{name}={value!r} must be a positive integer (the number of blocks).")
        out.append(value)
    return out[0], out[1]
