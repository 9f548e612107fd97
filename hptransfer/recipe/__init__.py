"""Recipes: YAML job descriptions parsed into typed, documented sections, and the run spec.

:func:`load_recipe` validates a YAML file (every problem at once, with its field path);
:meth:`Recipe.at` gives the :class:`RunSpec` of one run; :func:`amend` changes a recipe and
validates it again; :func:`json_schema` publishes the recipe schema for editors. The Python API
(``tune(train_fn, ...)``, ``check_transfer``, ``coord_check``, ``transfer``) builds recipes too: a
section field may hold the object itself (a factory, a ``train_fn``, a task) where YAML has its
import path or name.
"""

from __future__ import annotations

from ._load import amend, load_recipe
from ._recipe import Recipe, parse_recipe, register_section
from ._reference import reference
from ._runspec import RunSpec, RunTrainSpec
from ._schema import json_schema
from ._sections import (
    SWEEPABLE,
    TUNABLE,
    DepthsSpec,
    ModelSpec,
    OptimizerSpec,
    ParametrizationSpec,
    ScheduleSpec,
    SearchParam,
    TaskSpec,
    TrainSpec,
    WidthsSpec,
)
from ._spec import spec_field
from ._stages import CheckSpec, GridSpec, TolerancesSpec, TransferSpec, TuneSpec

__all__ = [
    "Recipe", "RunSpec", "RunTrainSpec", "load_recipe", "parse_recipe", "amend", "register_section", "spec_field",
    "json_schema", "reference", "TUNABLE", "SWEEPABLE",
    "ModelSpec", "TaskSpec", "ParametrizationSpec", "OptimizerSpec", "ScheduleSpec", "TrainSpec", "WidthsSpec",
    "DepthsSpec", "SearchParam", "TuneSpec", "TransferSpec", "CheckSpec", "GridSpec", "TolerancesSpec",
]
