"""The parametrization layer: rewrite a model factory's output into SP, μP or a registered variant.

Shapes at two widths give each parameter a role; a serialisable :class:`ScalingTable` keyed by
parameter name records the init, forward multipliers and per-parameter LR rules, from which
:func:`param_groups` derives optimizer groups for any torch optimizer.
"""

from __future__ import annotations

from ._groups import OPTIMIZERS, optimizer, optimizer_family, param_groups
from ._lr_ratios import lr_scheduler
from ._muon import MuonAdamW
from ._mup_interop import read_bsh, table_from_mup, write_bsh
from ._rewrite import attach_table, parametrize
from ._rules import SP, MuP, Parametrization, available_parametrizations, get_parametrization, register_parametrization
from ._table import ModuleScaling, ParamInfo, Role, ScalingTable, scaling_table

__all__ = ["parametrize", "attach_table", "param_groups", "optimizer", "optimizer_family", "lr_scheduler",
           "scaling_table",
           "ScalingTable", "ParamInfo", "ModuleScaling", "Role", "Parametrization", "SP", "MuP",
           "register_parametrization", "get_parametrization", "available_parametrizations", "write_bsh", "read_bsh",
           "table_from_mup", "OPTIMIZERS", "MuonAdamW"]
