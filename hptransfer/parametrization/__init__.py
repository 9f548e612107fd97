"""The parametrization layer: rewrite a model factory's output into SP, μP or a registered variant.

Shapes at two widths give each parameter a role; a serialisable :class:`ScalingTable` keyed by
parameter name records the init, forward multipliers and per-parameter LR rules, from which
:func:`param_groups` derives optimizer groups for any torch optimizer.
"""

from __future__ import annotations

from ._groups import OPTIMIZERS, WEIGHT_DECAY_MODES, optimizer, optimizer_class, optimizer_family, param_groups
from ._muon import MuonAdamW, OwnMuon, muon_class
from ._mup_interop import read_bsh, table_from_mup, write_bsh
from ._rewrite import attach_table, attention_trace_pending, parametrize
from ._rules import (
    OPTIMIZER_FAMILIES,
    SP,
    CompleteP,
    DepthMuP,
    DepthScaled,
    MuP,
    Parametrization,
    available_parametrizations,
    get_parametrization,
    register_parametrization,
)
from ._shapes import current_role, width_role
from ._table import ROLES, ModuleScaling, ParamInfo, Role, ScalingTable, scaling_table, strip_prefix, unwrap
from ._trace import AttentionTracer, TraceFailure, module_stack, trace_attention

__all__ = [
    "parametrize", "attach_table", "attention_trace_pending", "write_bsh", "read_bsh", "table_from_mup",
    "param_groups", "optimizer", "optimizer_family", "optimizer_class",
    "OPTIMIZERS", "WEIGHT_DECAY_MODES", "OPTIMIZER_FAMILIES", "MuonAdamW", "OwnMuon", "muon_class",
    "Parametrization", "SP", "MuP", "DepthScaled", "DepthMuP", "CompleteP",
    "register_parametrization", "get_parametrization", "available_parametrizations",
    "AttentionTracer", "TraceFailure", "module_stack", "trace_attention",
    "ScalingTable", "ParamInfo", "ModuleScaling", "Role", "ROLES", "scaling_table", "strip_prefix", "unwrap",
    "width_role", "current_role",
]
