"""Which weights that map the width to a fixed size are the model's readout.

Shape inference (``_shapes``) finds every weight whose fan-in grows and fan-out does not. One is
the readout, hooked with the ``output_mult / m`` multiplier; others are routers or bottlenecks,
TP5's output weights read out in place. The user's ``readout=`` decides, else what the forward
returns (``pick_readout``), else a single candidate; anything else is an error naming them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..errors import ShapeInferenceError
from ._table import ParamInfo

__all__ = ["match_any", "resolve_readouts"]


def match_any(name: str, patterns: Sequence[str]) -> bool:
    """Glob match of a dotted name against patterns (``*`` spans dots)."""
    return any(fnmatch.fnmatchcase(name, pat) for pat in patterns)


def resolve_readouts(
    params: dict[str, ParamInfo],
    readout_modules: dict[str, str],
    candidates: list[str],
    readout: Sequence[str] | None,
    pick_readout: Callable[[list[str]], str | None] | None = None,
) -> dict[str, str]:
    """Decide which fan-in-only weights (``candidates``) are readouts; returns the readout modules
    (``module -> parameter``) that get the forward multiplier. ``readout``: the user's patterns.
    ``pick_readout``: given the modules of several width -> fixed weights, the one that is the
    model's readout (the others keep the output role without a hook: routers or bottlenecks read
    out in place), or None; still ambiguous: an error naming them and the fix."""
    if readout is not None:
        patterns = [readout] if isinstance(readout, str) else list(readout)
        chosen = {m: n for m, n in readout_modules.items() if match_any(n, patterns) or match_any(m, patterns)}
        # A declared readout that is a raw tensor of an unknown module: read out in place.
        for name, info in params.items():
            if match_any(name, patterns) and name not in chosen.values():
                if not info.width_axes:
                    raise ShapeInferenceError(
                        f"readout pattern matches {name!r}, which has no width dimension. Fix: point readout= "
                        "at the weight that maps width to outputs."
                    )
                params[name] = replace(info, role="output", fan_in_mult=info.width_mult, fan_out_mult=1.0)
        matched = {n for n in params if match_any(n, patterns)} | set(chosen.values())
        if not matched:
            raise ShapeInferenceError(
                f"readout={patterns!r} matches no parameter or module. Candidates (fan-in grows, fan-out fixed): "
                f"{candidates or 'none'}."
            )
        for name in candidates:
            if name not in matched:
                raise ShapeInferenceError(
                    f"parameter {name!r} maps width to a fixed size like a readout but is not in readout="
                    f"{patterns!r}. Fix: add it to readout=, or pin its role with roles={{{name!r}: 'output'}} "
                    f"(bottleneck, read out in place) or roles={{{name!r}: 'input'}}."
                )
        return chosen
    if len(candidates) > 1 and pick_readout is not None:
        # The one whose output the model returns is the readout (hooked); the others keep the
        # output role without a hook: read out in place (TP5 Table 3's output weights).
        modules = [m for m, n in readout_modules.items() if n in candidates]
        picked = pick_readout(modules) if len(modules) == len(candidates) else None
        if picked is not None:
            return {picked: readout_modules[picked]}
    if len(candidates) > 1:
        raise ShapeInferenceError(
            "ambiguous readout: several weights map width to a fixed size: "
            + ", ".join(f"{n} {list(params[n].shape)}" for n in candidates)
            + ". μP scales the final readout differently from a bottleneck inside the network. "
            f"Fix: name the readout(s), e.g. parametrize(..., readout={candidates[-1]!r}), and pin any "
            f"bottleneck with roles={{{candidates[0]!r}: 'output'}} or 'input'."
        )
    return readout_modules
