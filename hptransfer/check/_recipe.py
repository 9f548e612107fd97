"""The transfer check's one implementation, :func:`check_recipe`, and its Python door :func:`check_transfer`.

The ``check:`` section is a built-in recipe section (:class:`hptransfer.recipe.CheckSpec`),
parsed by the same validating parser as the others. Every field has a default, so ``check: {}``
(or no section at all) checks the recipe's ``search.lr`` range at doubling widths from the proxy to
the target. ``check_transfer(factory, task, ...)`` writes the recipe its arguments stand for and
runs it here: one set of defaults (the recipe sections'), every option reachable from both doors.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from ..errors import CheckError, HPTransferError, RecipeError
from ..parametrization import available_parametrizations
from ..recipe import SWEEPABLE, GridSpec, Recipe, parse_recipe
from ..recipe._kwargs import optimizer_fields, parametrization_fields
from ..recipe._recipe import safe_name
from ..recipe._spec import is_object, object_name
from ..recipe._stages import PRUNE_MARGINS
from ..studies import load_study, storage_url
from ..training import Schedule
from ._check import Strategy, check_grid
from ._report import Tolerances, TransferReport
from ._runner import RecipeRunner

__all__ = ["check_transfer", "check_recipe", "grid_values", "check_widths", "check_depths"]


def grid_values(low: float, high: float, per_octave: float = 2.0) -> list[float]:
    """``low * 2 ** (k / per_octave)`` for k = 0, 1, ... up to ``high`` (inclusive within 1e-9)."""
    return GridSpec(low=low, high=high, per_octave=per_octave).points()


def check_widths(recipe: Recipe) -> list[int]:
    """The check's widths: ``check.widths`` or doublings from the smallest proxy to the largest target."""
    spec = recipe.check
    if spec.widths is not None:
        return sorted(set(int(w) for w in spec.widths))
    if recipe.widths.target is None:
        raise CheckError("the check needs its widths: the recipe has no widths.target. Fix: set check.widths "
                         "(3 or more), or widths.target.")
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
    while out[-1] * 2 <= int(recipe.depths.target or 0):
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
    for hp in SWEEPABLE:
        g = getattr(spec, hp)
        if hp == "lr" and g is None:
            s = recipe.search.get("lr")
            if s is None or s.low is None or s.high is None:
                raise CheckError("the check needs an LR grid: the recipe sets no check.lr and searches no lr range. "
                                 "Fix: add `check: {lr: {low: 1.0e-4, high: 1.0e-1}}`.")
            g = GridSpec(low=float(s.low), high=float(s.high))
        if g is not None:
            grids[hp] = g.points()
    steps, batch = spec.steps or recipe.train.steps, spec.batch_size or recipe.train.batch_size
    points = check_widths(recipe) if axis == "width" else check_depths(recipe)
    runner = RecipeRunner(recipe, steps=steps, batch_size=batch, axis=axis, fixed_width=min(recipe.widths.proxy))
    # Non-swept HPs come from the recipe itself (RecipeRunner fills them in); only the LR must
    # be named, for the sweeps of the other HPs.
    lr = recipe.defaults().get("lr")
    fixed = {"lr": float(lr)} if lr is not None else {}
    storage = storage or recipe.tune.storage
    url = storage if storage == "inmemory" else storage_url(storage, recipe.run_dir)
    return check_grid(
        runner, widths=points, grid=grids, seeds=spec.seeds, parametrizations=pars, fixed=fixed,
        tolerances=spec.tolerances, expect=exp, storage=url,
        study_prefix=recipe.name if axis == "width" else f"{recipe.name}-depth", workers=workers or spec.workers,
        n_boot=spec.bootstrap, progress=progress,
        config={"recipe": recipe.name, "recipe_hash": recipe.hash, "steps": steps, "batch_size": batch,
                "optimizer": None if "optimizer" in recipe.user_decides else object_name(recipe.optimizer.name),
                "base_width": recipe.base_width, "axis": axis,
                **({} if axis == "width" else {"width": min(recipe.widths.proxy)})},
        strategy=strategy or spec.strategy, start=_tuned_lr(recipe, url),
        prune_margins=spec.prune_margins if spec.prune else None, extend=spec.extend,
    )


def _tuned_lr(recipe: Recipe, url: str) -> float | None:
    """Where an adaptive check starts: the tuning study's best LR if it exists, else the recipe's LR."""
    lr = recipe.defaults().get("lr")
    if url != "inmemory":
        with contextlib.suppress(HPTransferError, ValueError, KeyError):  # no study yet, or no finished trial
            lr = load_study(url, recipe.study_name).best_trial.params.get("lr", lr)
    return None if lr is None else float(lr)


def check_transfer(
    factory: Callable[..., Any] | str,
    task: Any,
    *,
    widths: Sequence[int],
    grid: Mapping[str, Sequence[float]],
    seeds: Sequence[int] = (0, 1),
    parametrizations: Sequence[str] = ("mup",),
    steps: int = 300,
    batch_size: int = 32,
    base_width: int | None = None,
    optimizer: str | type | None = None,
    schedule: Schedule | None = None,
    fixed: Mapping[str, float] | None = None,
    tolerances: Tolerances | None = None,
    expect: Mapping[str, str] | None = None,
    storage: str | None = None,
    study_prefix: str = "hptransfer",
    workers: int | str = "auto",
    n_boot: int | None = None,
    parametrize_options: Mapping[str, Any] | None = None,
    optimizer_options: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    strategy: Strategy = "grid",
    prune_margins: Sequence[float] | None = PRUNE_MARGINS,
    depths: Sequence[int] | None = None,
) -> TransferReport:
    """Sweep HPs at several widths, estimate the optimum per width and judge whether it transfers.

    The Python door of :func:`check_recipe`: the arguments become a recipe (:func:`check_transfer_recipe`)
    and run there, with the recipe sections' defaults (AdamW, warmup 0 + cosine to 10%, ...).

    Args:
        factory: ``width -> nn.Module`` (module-level for ``workers > 1``), or a built-in model
            name (``"mlp"``, ``"gpt"``, ``"cnn"``, ``"resglu"``; the task's sizes are passed to it).
        task: a built-in task name or a task object (``batch``, ``loss``, ``eval_loss``, ``example_input``,
            ``init_loss_bound``, as :class:`hptransfer.tasks.Task`).
        widths: three or more widths; batch size and steps stay the same at every width.
        grid: ``{hp: values}``; ``lr`` is required, any other of :data:`hptransfer.recipe.SWEEPABLE` optional
            (``check.<hp>.values``). Values are positive and analysed in log2 (e.g. ``2 ** np.arange(-14,
            -5, 0.5)``: half-octave steps). Each HP is swept with the others at ``fixed``.
        seeds: two or more training seeds (default ``(0, 1)``; 3+ give tighter intervals).
        parametrizations: e.g. ``("mup",)`` (default) or ``("sp", "mup")`` to compare on one grid.
        steps, batch_size: per run (``train.steps`` / ``train.batch_size``; defaults 300 and 32).
        base_width: base width of the parametrization (default: the smallest width).
        optimizer: ``optimizer.name`` (default the recipe's, ``adamw``), or a torch optimizer class.
        schedule: the LR schedule (``schedule``; default the recipe's: no warmup, cosine to 10%).
        fixed: values of the non-swept HPs (``lr`` is needed when sweeping another HP).
        tolerances: pass/fail limits (``check.tolerances``).
        expect: ``{parametrization: "pass" | "fail" | "any"}``; default every one listed must pass.
        storage: journal file path or ``postgresql://`` URL; default in memory (nothing written).
        study_prefix: the recipe's name; study names are ``{prefix}-{hp}-...``.
        workers: grid strategy's worker processes (``check.workers``; ``"auto"``: one per core).
        n_boot: bootstrap replicates (``check.bootstrap``, default 1000).
        parametrize_options: :func:`hptransfer.parametrize` options (``output_mult``, ``base_std``,
            ``readout`` ...): the ``parametrization`` section's fields, the rest as its ``options``.
        optimizer_options: ``betas``, ``eps``, ``momentum``, ``weight_decay`` ...: the ``optimizer``
            section's fields, the rest as its ``kwargs``.
        progress: called with one-line progress messages (e.g. ``print``).
        strategy: ``"grid"`` (default: every grid point) or ``"adaptive"`` (``check.strategy``).
        prune_margins: adaptive: ``check.prune_margins`` (default the recipe's; ``None``: never stop a run early).
        depths: sweep these depths at the single width in ``widths`` instead (the depth axis).

    Returns:
        A :class:`TransferReport`; ``report.passed`` is the gate.

    Raises:
        CheckError, RecipeError: bad widths, seeds, grid, HP names or expectations (named).
    """
    try:
        recipe = check_transfer_recipe(
            factory, task, widths=widths, grid=grid, seeds=seeds, parametrizations=parametrizations, steps=steps,
            batch_size=batch_size, base_width=base_width, optimizer=optimizer, schedule=schedule, fixed=fixed,
            tolerances=tolerances, expect=expect, study_prefix=study_prefix, workers=workers, n_boot=n_boot,
            parametrize_options=parametrize_options, optimizer_options=optimizer_options, strategy=strategy,
            prune_margins=prune_margins, depths=depths)
    except RecipeError as exc:  # the recipe's field paths, raised as the check's own error
        raise CheckError(f"check_transfer(...): {exc}") from None
    return check_recipe(recipe, storage=storage or "inmemory", progress=progress,
                        axis="depth" if depths is not None else "width")


def check_transfer_recipe(factory: Any, task: Any, *, widths: Sequence[int], grid: Mapping[str, Sequence[float]],
                          seeds: Sequence[int], parametrizations: Sequence[str], steps: int, batch_size: int,
                          base_width: int | None, optimizer: Any, schedule: Schedule | None,
                          fixed: Mapping[str, float] | None, tolerances: Tolerances | None,
                          expect: Mapping[str, str] | None, study_prefix: str, workers: int | str,
                          n_boot: int | None, parametrize_options: Mapping[str, Any] | None,
                          optimizer_options: Mapping[str, Any] | None, strategy: str,
                          prune_margins: Sequence[float] | None, depths: Sequence[int] | None) -> Recipe:
    """The recipe :func:`check_transfer`'s arguments stand for (only what is given is written)."""
    ws = sorted({int(w) for w in widths})
    if not ws:
        raise CheckError("widths is empty. Fix: e.g. widths=[64, 128, 256, 512].")
    pars = list(dict.fromkeys(str(p) for p in parametrizations))
    if not pars:
        raise CheckError("parametrizations is empty. Fix: parametrizations=['mup'] or ['sp', 'mup'].")
    par = {"name": pars[0], "base_width": base_width or ws[0], **parametrization_fields(parametrize_options)}
    stray = [p for p in (expect or {}) if p not in pars]
    if stray:
        raise CheckError(f"expect names parametrization(s) {stray}, which are not checked ({', '.join(pars)}). "
                         "Fix: add them to parametrizations or drop them from expect.")
    opt = optimizer_fields(optimizer_options)
    if optimizer is not None:
        opt["name"] = optimizer
    check: dict[str, Any] = {
        "seeds": list(seeds), "compare": pars, "workers": workers, "strategy": strategy,
        "expect": dict(expect) if expect is not None else {p: "pass" for p in pars},
        **{hp: {"values": [float(v) for v in values]} for hp, values in grid.items()},
    }
    if "lr" not in grid:
        raise CheckError(f"grid has {sorted(grid)} but the learning rate is required. Fix: add "
                         "grid={'lr': [...]} (e.g. half-octave steps 2**-14 .. 2**-6).")
    if set(grid) - {"lr"} and "lr" not in (fixed or {}):
        raise CheckError(f"sweeping {sorted(set(grid) - {'lr'})} needs the learning rate those sweeps train at. Fix: "
                         "pass fixed={'lr': <your tuned lr>}.")
    unknown = [hp for hp in grid if hp not in SWEEPABLE]
    if unknown:
        raise CheckError(f"grid HP(s) {unknown} cannot be swept by the check. Fix: use some of {', '.join(SWEEPABLE)}.")
    if tolerances is not None:
        check["tolerances"] = tolerances
    if n_boot is not None:
        check["bootstrap"] = n_boot
    if prune_margins is None or not list(prune_margins):
        check["prune"] = False
    else:
        check["prune_margins"] = list(prune_margins)
    data: dict[str, Any] = {
        "name": safe_name(study_prefix), "model": _model(factory), "task": _task(task), "parametrization": par,
        "optimizer": opt, "train": {"steps": steps, "batch_size": batch_size, "seeds": list(seeds)[:1]},
        "widths": {"proxy": [ws[0]], "target": [ws[-1]]}, "check": check,
        "fixed": {k: v for k, v in (fixed or {}).items()},
    }
    if schedule is not None:
        data["schedule"] = {"warmup": schedule.warmup, "decay": schedule.decay, "min_lr_frac": schedule.min_lr_frac}
    if depths is not None:
        ds = sorted({int(d) for d in depths})
        data["depths"] = {"proxy": ds[0], "target": ds[-1]}
        check["depths"] = ds
    else:
        check["widths"] = ws
    return _with_fixed(data)


def _with_fixed(data: dict[str, Any]) -> Recipe:
    """Parse ``data`` with its ``fixed`` values written where the recipe holds them (``lr`` -> ``optimizer.lr``)."""
    from ..recipe import amend

    fixed = data.pop("fixed")
    return amend(parse_recipe(data, source="check_transfer(...)"), fixed=fixed)


def _model(factory: Any) -> dict[str, Any]:
    return {"name": factory} if isinstance(factory, str) else {"factory": factory}


def _task(task: Any) -> dict[str, Any]:
    """A built-in task object is written as its name and arguments (a plain recipe); any other object as is."""
    from ..zoo.tasks import TASKS

    if is_object(task) and type(task) in TASKS.values() and dataclasses.is_dataclass(task):
        return {"name": cast(Any, task).name,
                "kwargs": {f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.init}}
    return {"name": task}
