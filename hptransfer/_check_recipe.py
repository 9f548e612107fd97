"""The recipe's ``check:`` section and :func:`check_recipe`: a transfer check from a recipe.

Registered with :func:`hptransfer.recipe.register_section` when ``hptransfer`` is imported, so
every recipe may carry a ``check:`` section; it is parsed by the same validating parser as
the built-in sections. Every field has a default, so ``check: {}`` (or no section at all)
checks the recipe's ``search.lr`` range at doubling widths from the proxy to the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._spec import Problems, spec_field
from .recipe import Recipe, register_section

__all__ = ["CheckSpec", "GridSpec", "TolerancesSpec", "check_recipe", "grid_values", "check_widths"]


@dataclass
class GridSpec:
    """A log grid of one HP: ``low`` to ``high`` in steps of ``1/per_octave`` octave."""

    low: float = spec_field(kind="float", minimum=0.0, exclusive_min=True, doc="Smallest value (> 0). Required.")
    high: float = spec_field(kind="float", minimum=0.0, exclusive_min=True, doc="Largest value. Required.")
    per_octave: float = spec_field(2.0, kind="float", minimum=0.0, exclusive_min=True,
                                   doc="Grid points per octave (factor 2). Default 2: half-octave steps.")


@dataclass
class TolerancesSpec:
    """Pass/fail limits; defaults measured in docs/verification.md."""

    max_drift: float = spec_field(0.15, kind="float", minimum=0.0, exclusive_min=True,
                                  doc="Largest |drift| of the optimum, octaves per width doubling. Default 0.15.")
    max_regret: float = spec_field(0.02, kind="float", minimum=0.0, exclusive_min=True,
                                   doc="Largest transfer regret as a fraction of the best loss. Default 0.02.")
    max_wider_worse: float = spec_field(0.01, kind="float", minimum=0.0, exclusive_min=True,
                                        doc="Largest loss rise from one width to the next at the proxy's optimum, "
                                            "as a fraction of the loss. Default 0.01.")


@dataclass
class CheckSpec:
    """The transfer check (`hptransfer check RECIPE`): widths, grids, seeds, tolerances."""

    widths: tuple | None = spec_field(None, kind="ints", minimum=1, optional=True,
                                      doc="Widths (3 or more). Default: doublings from the smallest proxy width "
                                          "to the largest target width.")
    seeds: tuple = spec_field((0, 1), kind="ints", minimum=0, doc="Training seeds (2 or more). Default [0, 1].")
    lr: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,  # noqa: RUF009
                                     doc="LR grid. Default: `search.lr` low/high, 2 points per octave.")
    init_std: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,  # noqa: RUF009
                                           doc="Also sweep the init std over this grid. Default: not swept.")
    output_mult: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,  # noqa: RUF009
                                              doc="Also sweep the output multiplier. Default: not swept.")
    attn_mult: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,  # noqa: RUF009
                                            doc="Also sweep the attention multiplier. Default: not swept.")
    steps: int | None = spec_field(None, kind="int", minimum=1, optional=True,
                                   doc="Steps per run. Default: `train.steps` (the same at every width).")
    batch_size: int | None = spec_field(None, kind="int", minimum=1, optional=True,
                                        doc="Batch size per run. Default: `train.batch_size`.")
    compare: tuple | None = spec_field(None, kind="strs", optional=True,
                                       doc="Parametrizations to run side by side, e.g. [sp, mup]. Default: only "
                                           "`parametrization.name`.")
    expect: dict = spec_field(kind="mapping", factory=dict,  # noqa: RUF009 - returns a dataclasses.field
                              doc="Expected verdict per parametrization (`pass`, `fail`, `any`). Default: the "
                                  "recipe's parametrization must pass, compared ones are reported (`any`).")
    tolerances: TolerancesSpec = spec_field(kind="section", section=TolerancesSpec,  # noqa: RUF009
                                            factory=TolerancesSpec,
                                            doc="Pass/fail limits.")
    workers: int = spec_field(1, kind="int", minimum=1, doc="Local worker processes. Default 1.")
    bootstrap: int = spec_field(1000, kind="int", minimum=50, doc="Bootstrap replicates. Default 1000.")


_HPS = ("lr", "init_std", "output_mult", "attn_mult")


def _validate(recipe: Recipe, problems: Problems) -> None:
    spec: CheckSpec = recipe.sections["check"]
    if spec.widths is not None and len(set(spec.widths)) < 3:
        problems.append(("check.widths", f"needs at least 3 distinct widths, got {list(spec.widths)}."))
    if len(set(spec.seeds)) < 2:
        problems.append(("check.seeds", f"needs at least 2 distinct seeds, got {list(spec.seeds)}. Fix: [0, 1, 2]."))
    for hp in _HPS:
        g = getattr(spec, hp)
        if g is not None and g.low >= g.high:
            problems.append((f"check.{hp}", f"low ({g.low:g}) must be below high ({g.high:g})."))
    if spec.lr is None and not (recipe.search.get("lr") and recipe.search["lr"].low):
        problems.append(("check.lr", "no LR grid: the recipe searches no `lr` range. Fix: add "
                                     "`check: {lr: {low: 1.0e-4, high: 1.0e-1}}`."))
    from .check import EXPECTATIONS

    for p, e in spec.expect.items():
        if e not in EXPECTATIONS:
            problems.append((f"check.expect.{p}", f"{e!r} is not one of {', '.join(EXPECTATIONS)}."))


register_section("check", CheckSpec, doc="The transfer check (hptransfer check).", validate=_validate)


def grid_values(low: float, high: float, per_octave: float = 2.0) -> list[float]:
    """``low * 2 ** (k / per_octave)`` for k = 0, 1, ... up to ``high`` (inclusive within 1e-9)."""
    n = math.floor(math.log2(high / low) * per_octave + 1e-9)
    return [float(low * 2.0 ** (k / per_octave)) for k in range(n + 1)]


def check_widths(recipe: Recipe) -> list[int]:
    """The check's widths: ``check.widths`` or doublings from the smallest proxy to the largest target."""
    spec = recipe.sections.get("check") or CheckSpec()
    if spec.widths is not None:
        return sorted(set(int(w) for w in spec.widths))
    lo, hi = min(recipe.widths.proxy), max(recipe.widths.target)
    out = [lo]
    while out[-1] * 2 <= hi:
        out.append(out[-1] * 2)
    return out


def check_recipe(
    recipe: Recipe,
    *,
    compare: Sequence[str] | None = None,
    expect: dict[str, str] | None = None,
    workers: int | None = None,
    storage: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Run the recipe's transfer check on its tuning storage; returns a :class:`~hptransfer.check.TransferReport`.

    ``compare`` and ``expect`` override the section's; parametrizations named in ``compare``
    other than the recipe's own default to ``expect="any"`` (reported, not gated).
    """
    from ._check_runner import RecipeRunner
    from ._storage import storage_url
    from .check import Tolerances, check_grid

    spec: CheckSpec = recipe.sections.get("check") or CheckSpec()
    own = recipe.parametrization.name
    pars = list(compare or spec.compare or [own])
    exp = {p: ("pass" if p == own else "any") for p in pars}
    exp.update({k: v for k, v in spec.expect.items() if k in exp})
    exp.update({k: v for k, v in (expect or {}).items() if k in exp})
    grids: dict[str, list[float]] = {}
    for hp in _HPS:
        g = getattr(spec, hp)
        if hp == "lr" and g is None:
            s = recipe.search["lr"]
            g = GridSpec(low=float(s.low), high=float(s.high))
        if g is not None:
            grids[hp] = grid_values(g.low, g.high, g.per_octave)
    steps, batch = spec.steps or recipe.train.steps, spec.batch_size or recipe.train.batch_size
    runner = RecipeRunner(recipe, steps=steps, batch_size=batch)
    # Non-swept HPs come from the recipe itself (RecipeRunner fills them in); only the LR must
    # be named, for the sweeps of the other HPs.
    fixed = {"lr": float(recipe.defaults()["lr"])}
    t = spec.tolerances
    url = storage_url(storage or recipe.tune.storage, recipe.run_dir)
    return check_grid(
        runner, widths=check_widths(recipe), grid=grids, seeds=spec.seeds, parametrizations=pars, fixed=fixed,
        tolerances=Tolerances(t.max_drift, t.max_regret, t.max_wider_worse), expect=exp, storage=url,
        study_prefix=recipe.name, workers=workers or spec.workers, n_boot=spec.bootstrap, progress=progress,
        config={"recipe": recipe.name, "recipe_hash": recipe.hash, "steps": steps, "batch_size": batch,
                "optimizer": recipe.optimizer.name, "base_width": recipe.base_width},
    )
