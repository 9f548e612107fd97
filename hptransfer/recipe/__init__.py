"""Recipes: YAML job descriptions parsed into typed, documented sections, and the run spec.

:func:`load_recipe` validates a YAML file (every problem at once, with its field path);
:meth:`Recipe.at` gives the :class:`RunSpec` of one run; :func:`json_schema` publishes the
recipe schema for editors.
"""

from __future__ import annotations

from ._recipe import (
    OBJECTIVE_FIELDS,
    Recipe,
    apply_overrides,
    load_recipe,
    objective_changes,
    parse_recipe,
    register_section,
)
from ._reference import field_help, reference
from ._runspec import RunSpec, RunTrainSpec, plain, spec_from_dict, spec_to_dict
from ._schema import json_schema
from ._sections import (
    DIVERGENCE_FACTOR,
    EXPECTATIONS,
    LAWS,
    PRUNERS,
    SAMPLERS,
    TUNABLE,
    CheckSpec,
    DepthsSpec,
    Expectation,
    GridSpec,
    Law,
    ModelSpec,
    OptimizerName,
    OptimizerSpec,
    ParametrizationSpec,
    Pruner,
    Sampler,
    ScheduleSpec,
    SearchParam,
    TaskSpec,
    TolerancesSpec,
    TrainSpec,
    TransferSpec,
    TuneSpec,
    WidthsSpec,
)
from ._spec import Problems, field_docs, import_object, parse_section, spec_field, suggest
from ._validate import parse_search

__all__ = [
    "Recipe", "objective_changes", "OBJECTIVE_FIELDS",
    "RunSpec", "RunTrainSpec", "load_recipe", "parse_recipe", "parse_search", "apply_overrides",
    "register_section", "reference", "field_help", "json_schema", "spec_to_dict", "spec_from_dict", "plain",
    "ModelSpec", "TaskSpec", "ParametrizationSpec", "OptimizerSpec", "ScheduleSpec", "TrainSpec", "WidthsSpec",
    "DepthsSpec",
    "SearchParam", "TuneSpec", "TransferSpec", "CheckSpec", "GridSpec", "TolerancesSpec",
    "TUNABLE", "DIVERGENCE_FACTOR", "SAMPLERS", "PRUNERS", "LAWS", "EXPECTATIONS", "Sampler", "Pruner", "Law",
    "Expectation", "OptimizerName",
    "spec_field", "parse_section", "field_docs", "Problems", "suggest", "import_object",
]
