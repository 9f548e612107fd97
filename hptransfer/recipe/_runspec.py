"""The run spec: one training run of a model at one width with concrete hyperparameter values.

:class:`RunSpec` is the one currency between the stages. The tuner's objective, the check's
runners, :func:`hptransfer.transfer`, :func:`hptransfer.load`, the coordinate check and
``hptransfer run`` all get a spec from :meth:`hptransfer.Recipe.at` and hand it to
:func:`hptransfer.training.build` / :func:`hptransfer.training.train_spec`. ``target.yaml`` is a spec
written by the same schema (:func:`spec_to_dict` / :func:`spec_from_dict`) plus provenance.

Where a tunable hyperparameter lives is said once, in :data:`hptransfer.recipe.TUNABLE`
(``hp -> (section, field, ...)``): :meth:`RunSpec.with_values` writes values into the sections
and :meth:`RunSpec.values` reads them back. Adding a tunable HP therefore touches two files:
its field and ``TUNABLE`` entry in ``recipe/_sections.py``, and the line of
``training/_build.py`` that consumes it (docs/architecture.md, "Adding a hyperparameter").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import RecipeError
from ._sections import DIVERGENCE_FACTOR, TUNABLE, ModelSpec, OptimizerSpec, ParametrizationSpec, ScheduleSpec, TaskSpec
from ._spec import Problems, parse_section, plain, spec_field

__all__ = ["RunSpec", "RunTrainSpec", "spec_to_dict", "spec_from_dict", "plain"]


@dataclass(frozen=True)
class RunTrainSpec:
    """Length and batch of one run, and when it counts as diverged."""

    batch_size: int | None = spec_field(None, kind="int", minimum=1, optional=True,
                                        doc="Examples (sequences for LM tasks) per step; null when the user's own "
                                            "training loop decides.")
    steps: int | None = spec_field(None, kind="int", minimum=1, optional=True,
                                   doc="Optimizer steps; null when the user's own training loop decides.")
    divergence_factor: float = spec_field(DIVERGENCE_FACTOR, kind="float", minimum=1.0, exclusive_min=True,
                                          doc="The run diverges when its loss exceeds this multiple of its start.")
    eval_every: int = spec_field(0, kind="int", minimum=0,
                                 doc="Record the validation loss every this many steps (0: only at the end).")


@dataclass(frozen=True)
class RunSpec:
    """One training run: model, task, parametrization, optimizer, schedule, length, seed, width, depth.

    Every hyperparameter has its concrete value here (``optimizer.lr``,
    ``parametrization.output_mult``, ...); ``extra`` holds values of HPs that only a user's own
    ``task.train_fn`` understands. A section is ``None`` when the user's ``train_fn`` decides it
    (its recipe writes no such section): nothing is recorded that the user's code was not handed,
    and a value for such a section (a searched ``lr``) goes to ``extra``. Build one with
    :meth:`hptransfer.Recipe.at`.
    """

    width: int = spec_field(kind="int", minimum=1, doc="Model width of this run.")
    model: ModelSpec = spec_field(kind="section", section=ModelSpec, doc="The model factory.")
    task: TaskSpec = spec_field(kind="section", section=TaskSpec, doc="The task.")
    parametrization: ParametrizationSpec | None = spec_field(
        kind="section", section=ParametrizationSpec, optional=True,
        doc="Parametrization, base width and multipliers; null when a user's own `train_fn` decides (the recipe "
            "writes no `parametrization:` section).")
    optimizer: OptimizerSpec | None = spec_field(kind="section", section=OptimizerSpec, optional=True,
                                                 doc="Optimizer and its hyperparameters; null when a user's own "
                                                     "`train_fn` builds its optimizer.")
    schedule: ScheduleSpec | None = spec_field(kind="section", section=ScheduleSpec, optional=True,
                                               doc="LR schedule shape; null when a user's own `train_fn` "
                                                   "decides.")
    train: RunTrainSpec = spec_field(kind="section", section=RunTrainSpec, doc="Steps and batch size.")
    seed: int = spec_field(0, kind="int", minimum=0, doc="Seed of the init draw and the data order. Default 0.")
    depth: int | None = spec_field(None, kind="int", minimum=1, optional=True,
                                   doc="Depth (number of blocks) of this run; null: the factory's own depth.")
    extra: dict = spec_field(kind="mapping", factory=dict,
                             doc="Values of HPs that only the user's `task.train_fn` uses.")

    @property
    def base_width(self) -> int:
        """The parametrization's base width (``width`` itself when none is recorded)."""
        p = self.parametrization
        return int((p.base_width if p is not None else None) or self.width)

    @property
    def base_depth(self) -> int | None:
        """The parametrization's base depth (``depth`` itself when none is recorded; ``None`` without depth)."""
        if self.depth is None:
            return None
        p = self.parametrization
        return int((p.base_depth if p is not None else None) or self.depth)

    def values(self) -> dict[str, Any]:
        """Every tunable HP's value (read from its section via ``TUNABLE``; sections that are ``None`` give
        none), plus ``extra``: exactly the values this run trains with."""
        out: dict[str, Any] = {hp: getattr(getattr(self, sec), fld) for hp, (sec, fld, *_) in TUNABLE.items()
                               if getattr(self, sec) is not None}
        out.update(self.extra)
        return out

    def with_values(self, values: dict[str, Any]) -> RunSpec:
        """A copy with ``values`` written into their sections (``TUNABLE``); names of no section, or of a
        section that is ``None`` (the user's ``train_fn`` decides it), go to ``extra``.

        ``None`` leaves a field as it is (an HP that was not searched).
        """
        by_section: dict[str, dict[str, Any]] = {}
        extra = dict(self.extra)
        for hp, value in values.items():
            if hp in TUNABLE and getattr(self, TUNABLE[hp][0]) is not None:
                if value is None:
                    continue
                sec, fld = TUNABLE[hp][:2]
                by_section.setdefault(sec, {})[fld] = _number(value)
            elif value is not None or hp not in TUNABLE:
                extra[hp] = _number(value) if hp in TUNABLE else value
        changes = {sec: dataclasses.replace(getattr(self, sec), **fields) for sec, fields in by_section.items()}
        return dataclasses.replace(self, extra=extra, **changes)

    def replace(self, **changes: Any) -> RunSpec:
        """``dataclasses.replace`` on the spec; nested sections by ``"section.field"`` keys too.

        Example: ``spec.replace(width=256, **{"train.steps": 50, "parametrization.name": "sp"})``.
        """
        top = {k: v for k, v in changes.items() if "." not in k}
        spec = dataclasses.replace(self, **top) if top else self
        for key, value in changes.items():
            if "." in key:
                sec, fld = key.split(".", 1)
                spec = dataclasses.replace(spec, **{sec: dataclasses.replace(getattr(spec, sec), **{fld: value})})
        return spec


def _number(value: Any) -> Any:
    """Optuna hands back numpy-free floats and ints; keep ints of float fields as floats."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(value)


def spec_to_dict(spec: RunSpec) -> dict[str, Any]:
    """The spec as plain data, in field order (the body of ``target.yaml``)."""
    return plain(spec)


def spec_from_dict(data: Any, source: str | None = None) -> RunSpec:
    """Read a spec back through the schema; every problem at once as a :class:`RecipeError`."""
    problems: Problems = []
    spec = parse_section(RunSpec, data, "", problems)
    if problems or spec is None:
        raise RecipeError(problems or [("(spec)", "incomplete run spec")], source)
    return spec
