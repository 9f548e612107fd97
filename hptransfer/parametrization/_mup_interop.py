"""Interop with the ``mup`` package (1.0.0): its base-shape files and models it prepared.

* A ``.bsh`` file is YAML ``{parameter name: [base dim or null per axis]}`` (a dim is "infinite",
  i.e. grows with width, when its base dim is given), as written by ``mup.save_base_shapes`` /
  ``mup.make_base_shapes`` and read by ``mup.load_base_shapes``. :func:`write_bsh` writes the
  base shapes of a model parametrized here in that format (so ``mup.set_base_shapes(model,
  "file.bsh")`` works on it); :func:`read_bsh` reads one.
* :func:`table_from_mup` turns a model already prepared with ``mup.set_base_shapes`` into one
  with a scaling table, taking every role from the ``infshape`` mup put on its tensors, so
  :func:`hptransfer.param_groups` gives the same per-parameter LRs as ``mup.MuAdam`` /
  ``mup.MuSGD``. mup has already applied its init and its ``MuReadout`` multiplier, so the table
  adds no hook and no init change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..errors import ParametrizationError
from ._rewrite import attach_table
from ._table import ParamInfo, ScalingTable, scaling_table, unwrap

__all__ = ["write_bsh", "read_bsh", "table_from_mup"]

_BSH_COMMENT = "# This is a base shape file encoded in yaml (mup format), written by hptransfer.write_bsh\n"


def write_bsh(model: nn.Module, path: str | Path) -> Path:
    """Write the base shapes of a parametrized ``model`` as a mup ``.bsh`` file; returns the path."""
    table = scaling_table(model)
    shapes: dict[str, list[int | None]] = {}
    for info in table:
        shapes[info.name] = [int(b) if axis in info.width_axes else None for axis, b in enumerate(info.base_shape)]
    path = Path(path)
    path.write_text(_BSH_COMMENT + yaml.safe_dump(shapes, indent=4))
    return path


def read_bsh(path: str | Path) -> dict[str, list[int | None]]:
    """``{parameter name: [base dim or None]}`` from a mup ``.bsh`` file (``yaml.safe_load``)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ParametrizationError(f"cannot read base shapes from {path}: {exc}. Fix: pass a .bsh file written by "
                                   "mup.save_base_shapes or hptransfer.write_bsh.") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ParametrizationError(f"{path} is not a base-shape file (a mapping of parameter name to a list of base "
                                   "dims). Fix: pass a .bsh file written by mup.save_base_shapes.")
    return {str(k): [None if d is None else int(d) for d in v] for k, v in data.items()}


def table_from_mup(model: nn.Module) -> nn.Module:
    """Attach a scaling table read from the ``infshape`` that ``mup.set_base_shapes`` put on every
    parameter of ``model``; returns the model.

    Roles follow mup's optimizers (``mup.optim``): two infinite dims -> ``hidden`` (Adam LR /
    fan-in multiplier), one -> vector-like ``input`` (this includes ``MuReadout``, whose width
    scaling mup applies in its forward), none -> ``scalar``.
    """
    inner = unwrap(model)
    params: dict[str, ParamInfo] = {}
    for name, p in inner.named_parameters():
        inf = getattr(p, "infshape", None)
        if inf is None:
            raise ParametrizationError(
                f"parameter {name!r} has no infshape, so the model was not prepared with mup.set_base_shapes. "
                "Fix: call mup.set_base_shapes(model, base) first, or use hptransfer.parametrize(factory, ...)."
            )
        dims = list(inf)
        axes = tuple(i for i, d in enumerate(dims) if d.isinf())
        fan_in = dims[1].width_mult() if len(dims) >= 2 else 1.0
        fan_out = dims[0].width_mult() if dims else 1.0
        role = "hidden" if len(axes) >= 2 else ("input" if axes else "scalar")
        params[name] = ParamInfo(
            name=name, role=role, shape=tuple(p.shape),  # type: ignore[arg-type]
            base_shape=tuple(int(d.base_dim) if d.isinf() else int(d.dim) for d in dims),
            width_axes=axes, fan_in_mult=float(fan_in), fan_out_mult=float(fan_out), init_class="mup",
        )
    table = ScalingTable("mup", _width(params), 1.0, params=params, options={"source": "mup.set_base_shapes"})
    return attach_table(inner, table)


def _width(params: dict[str, Any]) -> float:
    """The largest width multiplier (the table's width relative to a base width of 1)."""
    return max([i.fan_in_mult for i in params.values()] + [i.fan_out_mult for i in params.values()] + [1.0])
