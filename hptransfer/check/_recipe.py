"""The recipe's ``check:`` section and :func:`check_recipe`: a transfer check from a recipe.

The ``check:`` section is a built-in recipe section (:class:`hptransfer.recipe.CheckSpec`),
parsed by the same validating parser as the others. Every field has a default, so ``check: {}`` (or no section at all)
checks the recipe's ``search.lr`` range at doubling widths from the proxy to the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..errors import CheckError, HPTransferError
from ..parametrization import available_parametrizations
from ..recipe import GridSpec, Recipe
from ..studies import load_study, storage_url
from ._check import Strategy, check_grid
from ._prune import DEFAULT_MARGINS
from ._report import Tolerances, TransferReport
from ._runner import RecipeRunner

__all__ = ["check_recipe", "grid_values", "check_widths", "check_depths"]


_HPS = ("lr", "init_std", "output_mult", "attn_mult")


def grid_values(low: float, high: float, per_octave: float = 2.0) -> list[float]:
    """``low * 2 ** (k / per_octave)`` for k = 0, 1, ... up to ``high`` (inclusive within 1e-9)."""
    n = math.floor(math.log2(high / low) * per_octave + 1e-9)
    return [float(low * 2.0 ** (k / per_octave)) for k in range(n + 1)]


def check_widths(recipe: Recipe) -> list[int]:
    """The check's widths: ``check.widths`` or doublings from the smallest proxy to the largest target."""
    spec = recipe.check
    if spec.widths is not None:
        return sorted(set(int(w) for w in spec.widths))
    lo, hi = min(recipe.widths.proxy), max(recipe.widths.target)
    out = [lo]
    while out[-1] * 2 <= hi:
        out.append(out[-1] * 2)
    return out


def check_depths(recipe: Recipe) -> list[int]:
    """The depth axis's points: ``check.depths`` or doublings from ``depths.proxy`` to ``depths.target``."""
    if recipe.depths.proxy is None:
        raise CheckError("a check along depth needs the recipe's `depths: {proxy: ..., target: ...}`. Fix: add it, "
                         "or check along width.")
    if recipe.check.depths is not None:
        return sorted(set(int(d) for d in recipe.check.depths))
    out = [int(recipe.depths.proxy)]
    while out[-1] * 2 <= int(recipe.depths.target):
        out.append(out[-1] * 2)
    return out


def check_recipe(
    recipe: Recipe,
    *,
    compare: Sequence[str] | None = None,
    expect: dict[str, str] | None = None,
    workers: int | str | None = None,
    storage: str | None = None,
    progress: Callable[[str], None] | None = None,
    strategy: Strategy | None = None,
    axis: str = "width",
) -> TransferReport:
    """Run the recipe's transfer check on its tuning storage.

    ``compare`` and ``expect`` override the section's; parametrizations named in ``compare``
    other than the recipe's own default to ``expect="any"`` (reported, not gated). ``strategy``
    overrides ``check.strategy``; an adaptive check starts from the tuning study's best LR.
    ``axis="depth"`` sweeps depth (``check.depths``) at the smallest proxy width instead of width;
    the drift is then in octaves per depth doubling.
    """
    if axis not in ("width", "depth"):
        raise CheckError(f"axis={axis!r} is not an axis. Fix: use 'width' or 'depth'.")

    spec = recipe.check
    own = recipe.parametrization.name
    pars = list(compare or spec.compare or [own])
    known = available_parametrizations()
    unknown = [p for p in pars if p not in known]
    if unknown:  # before any study is opened: one line, no Optuna traceback
        raise CheckError(f"--compare / check.compare: unknown parametrization(s) {unknown}. Fix: use some of "
                         f"{sorted(known)}, comma-separated, e.g. --compare mup,sp.")
    dropped = [p for p in (expect or {}) if p not in pars]
    if dropped:  # an expectation on a parametrization that is not run would gate nothing
        raise CheckError(f"--expect names {dropped}, which this check does not run (it runs {pars}). Fix: add "
                         f"--compare {','.join(dict.fromkeys([*pars, *dropped]))}, or drop the expectation.")
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
    points = check_widths(recipe) if axis == "width" else check_depths(recipe)
    runner = RecipeRunner(recipe, steps=steps, batch_size=batch, axis=axis, fixed_width=min(recipe.widths.proxy))
    # Non-swept HPs come from the recipe itself (RecipeRunner fills them in); only the LR must
    # be named, for the sweeps of the other HPs.
    fixed = {"lr": float(recipe.defaults()["lr"])}
    t = spec.tolerances
    url = storage_url(storage or recipe.tune.storage, recipe.run_dir)
    return check_grid(
        runner, widths=points, grid=grids, seeds=spec.seeds, parametrizations=pars, fixed=fixed,
        tolerances=Tolerances(t.max_drift, t.max_regret, t.max_wider_worse), expect=exp, storage=url,
        study_prefix=recipe.name if axis == "width" else f"{recipe.name}-depth", workers=workers or spec.workers,
        n_boot=spec.bootstrap, progress=progress,
        config={"recipe": recipe.name, "recipe_hash": recipe.hash, "steps": steps, "batch_size": batch,
                "optimizer": recipe.optimizer.name, "base_width": recipe.base_width, "axis": axis,
                **({} if axis == "width" else {"width": min(recipe.widths.proxy)})},
        strategy=strategy or spec.strategy, start=_tuned_lr(recipe, url),
        prune_margins=DEFAULT_MARGINS if spec.prune else None,
    )


def _tuned_lr(recipe: Recipe, url: str) -> float:
    """Where an adaptive check starts: the tuning study's best LR if it exists, else the recipe's LR."""
    try:
        best = load_study(url, recipe.study_name).best_trial
        return float(best.params.get("lr", recipe.defaults()["lr"]))
    except (HPTransferError, ValueError, KeyError):  # no study yet, or no finished trial
        return float(recipe.defaults()["lr"])
