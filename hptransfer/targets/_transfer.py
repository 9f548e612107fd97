"""``transfer`` and ``load``: carry the best proxy values to the target width, and rebuild there.

:func:`transfer` takes the best feasible trial of a study and writes one ``target.yaml`` per
target width: the run spec (every HP value), the optimizer groups (per-group LR and weight decay, as
μP sets them), the parametrization, the base shapes, and provenance (study, trial, recipe hash,
package version, seeds). :func:`load` rebuilds model and optimizer from it in training code::

    model, opt = hptransfer.load("runs/mlp_quickstart/target.yaml")

μP transfers LR, init and multipliers across width (Tensor Programs V, arXiv:2203.03466); it
says nothing about batch size or training length. If the target changes either, a loud warning
is printed; the empirical laws of shared/RULES.md are opt-in (``transfer.law``).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import redact_url
from .._version import __version__
from ..errors import HPTransferWarning, TransferError
from ..parametrization import scaling_table
from ..recipe import (
    ModelSpec,
    OptimizerSpec,
    ParametrizationSpec,
    Recipe,
    RunSpec,
    RunTrainSpec,
    ScheduleSpec,
    TaskSpec,
    load_recipe,
)
from ..studies import load_study, storage_url
from ..training import Schedule, build, make_schedule
from ..tuning import TuneResult
from ._drift import DriftFit, fit_drift, fit_widths
from ._target_file import TargetFile, read_target, write_target

__all__ = ["transfer", "load", "Target", "Loaded", "LAW_CITATIONS", "law_factor"]

#: Citation printed when an opt-in law rescales the LR for a new batch size / horizon.
LAW_CITATIONS = {
    "step_law": "Step Law (Li et al. 2025, arXiv:2503.04715): eta_opt = 1.79 N^-0.713 D^0.307; applied at fixed N "
                "(width is μP's job): LR x (D_target / D_proxy)^0.307, D = tokens trained.",
    "deepseek": "DeepSeek LLM (arXiv:2401.02954): eta_opt = 0.3118 C^-0.125; applied at fixed model size: "
                "LR x (D_target / D_proxy)^-0.125, D = tokens trained.",
}
_LAW_EXPONENTS = {"step_law": 0.307, "deepseek": -0.125}


@dataclass
class Target:
    """One transferred configuration: its run ``spec``, the written ``path`` and the file's content.

    ``values`` is every HP value of the spec (``spec.values()``); ``config`` the whole target.yaml
    as plain data.
    """

    spec: RunSpec
    path: Path | None
    config: dict[str, Any]

    @property
    def width(self) -> int:
        return self.spec.width

    @property
    def values(self) -> dict[str, Any]:
        return self.spec.values()


def law_factor(law: str, proxy_tokens: float, target_tokens: float) -> float:
    """LR multiplier of an opt-in empirical law for a change in tokens trained (1.0 for ``none``)."""
    if law == "none" or proxy_tokens == target_tokens:
        return 1.0
    return float((target_tokens / proxy_tokens) ** _LAW_EXPONENTS[law])


def transfer(
    source: str | Path | Recipe | TuneResult,
    *,
    target_widths: int | list[int] | None = None,
    out: str | Path | None = None,
    factory: Callable[..., nn.Module] | None = None,
    base_width: int | None = None,
    parametrization: str = ParametrizationSpec.name,
    optimizer: str = OptimizerSpec.name,
    batch_size: int | None = None,
    steps: int | None = None,
    law: str | None = None,
    overrides: list[str] | None = None,
    quiet: bool = False,
) -> list[Target]:
    """Carry the best proxy values to each target width and write ``target.yaml`` file(s).

    Args:
        source: a recipe (path or :class:`Recipe`; its study is opened from ``tune.storage``) or
            the :class:`TuneResult` of :func:`hptransfer.tune`.
        target_widths: default the recipe's ``widths.target``; required for the function form.
        out: a folder (default: the recipe's run folder; the current directory for a Python
            study) or, for one width, a ``.yaml`` file.
            One width writes ``target.yaml``; several write ``target_w<width>.yaml`` each and
            ``target.yaml`` for the largest.
        factory, base_width, parametrization, optimizer: the function form (no recipe): your
            ``width -> nn.Module`` factory and how it was tuned. ``base_width`` default: the
            proxy width.
        batch_size, steps: target batch size / steps if they differ from the proxy's (warned).
        law: ``none``, ``step_law`` or ``deepseek`` -- opt-in LR rescaling when they differ.
        quiet: no printed banner (warnings are still issued).

    Returns:
        One :class:`Target` per width.

    Raises:
        TransferError: no usable trial, bad widths or law, a function-form study without factory.
    """
    rec, best = _source(source, overrides)
    widths = _widths(target_widths if target_widths is not None else (list(rec.widths.target) if rec else None))
    if rec is not None:
        batch_size = batch_size or rec.transfer.batch_size or rec.train.batch_size
        steps = steps or rec.transfer.steps or rec.train.steps
        law = law or rec.transfer.law
    law = law or "none"
    if law not in ("none", *LAW_CITATIONS):
        raise TransferError(f"transfer law={law!r} is unknown. Fix: use none, step_law or deepseek.")
    values = dict(best["values"])
    proxy_values = dict(values)
    notes = _horizon_warnings(rec, batch_size, steps, law, values, quiet)
    fit = _drift_fit(rec, values, widths, notes, quiet) if rec is not None and rec.transfer.drift == "fit" else None
    out_dir = Path(out) if out is not None else (rec.run_dir if rec else Path("."))
    specs = [_spec(rec, {**values, **({"lr": fit.at(w).lr_target} if fit else {})}, w, factory=factory,
                   base_width=base_width, parametrization=parametrization, optimizer=optimizer,
                   batch_size=batch_size, steps=steps) for w in widths]
    largest = max(widths)
    targets = []
    for spec in specs:
        tf = _target_file(spec, factory, best, rec, law, notes, proxy_values)
        if fit is not None:
            tf.transfer["drift"] = fit.at(spec.width).to_dict()
        if out_dir.suffix in (".yaml", ".yml") and len(specs) == 1:
            path = out_dir
        elif len(specs) == 1 or spec.width == largest:
            path = out_dir / "target.yaml"
        else:
            path = out_dir / f"target_w{spec.width}.yaml"
        write_target(path, tf)
        if len(specs) > 1 and path.name == "target.yaml":
            write_target(out_dir / f"target_w{spec.width}.yaml", tf)
        targets.append(Target(spec, path, tf.to_dict()))
    return targets


def _source(source: Any, overrides: list[str] | None) -> tuple[Recipe | None, dict[str, Any]]:
    """(recipe or None, best-trial facts) from a recipe or a TuneResult."""
    if isinstance(source, TuneResult):
        rec, url, name = source.recipe, source.storage, source.study_name
    else:
        rec = source if isinstance(source, Recipe) else load_recipe(source, overrides)
        url, name = storage_url(rec.tune.storage, rec.run_dir), rec.study_name
    study = load_study(url, name)
    try:
        trial = study.best_trial
    except ValueError:
        raise TransferError(f"study {name!r} has no finished, non-diverged trial to transfer. Fix: run "
                              "`hptransfer tune` (or widen the search range) first.") from None
    if isinstance(source, TuneResult):
        # The result names its trial: use that one even if the study found a better one since, so
        # that values, trial number and loss in target.yaml always belong together.
        trial = next((t for t in study.get_trials(deepcopy=False) if t.number == source.best_trial), trial)
    values = rec.values(dict(trial.params)) if rec else dict(trial.params)
    if isinstance(source, TuneResult):
        values.update(source.best_values)
    return rec, {
        "values": values, "study": name, "storage": url, "trial": trial.number, "value": float(trial.value),
        "recipe_hash": study.user_attrs.get("recipe_hash") or (rec.hash if rec else None),
    }


def _widths(widths: Any) -> list[int]:
    if widths is None:
        raise TransferError("transfer(...) needs target_widths= when the source has no recipe.")
    items = [widths] if isinstance(widths, int) else list(widths)
    if not items or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in items):
        raise TransferError(f"target_widths={widths!r}: give a positive integer or a list of them.")
    return items


def _horizon_warnings(rec: Recipe | None, batch: int | None, steps: int | None, law: str, values: dict[str, Any],
                      quiet: bool) -> list[str]:
    """Warn when batch size / steps change (μP does not cover them); apply an opt-in law to ``values``."""
    if rec is None or (batch == rec.train.batch_size and steps == rec.train.steps):
        return []
    msg = (f"the target trains with batch_size={batch}, steps={steps} but the proxy was tuned with "
           f"batch_size={rec.train.batch_size}, steps={rec.train.steps}. μP transfers across WIDTH only; the best LR "
           "also depends on batch size and training length (Bjorck et al., arXiv:2409.19913).")
    notes = [msg]
    if law == "none":
        notes.append("No law applied (transfer.law: none). Keep proxy batch/steps equal to the target's, or opt in "
                     "to transfer.law: step_law | deepseek.")
    else:
        ratio = (batch * steps) / (rec.train.batch_size * rec.train.steps)
        f = law_factor(law, 1.0, ratio)
        values["lr"] = float(values["lr"]) * f
        notes.append(f"Applied {law}: LR x {f:.4g}. Citation: {LAW_CITATIONS[law]}")
    warnings.warn(" ".join(notes), HPTransferWarning, stacklevel=3)
    if not quiet:
        bar = "!" * 78
        print(f"{bar}\nWARNING: {notes[0]}\n{' '.join(notes[1:])}\n{bar}", file=sys.stderr)
    return notes


def _drift_fit(rec: Recipe, values: dict[str, Any], widths: list[int], notes: list[str], quiet: bool) -> DriftFit:
    """Run the fitted drift correction (``transfer.drift: fit``); a note when it is not applied."""
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    say(f"fitting the LR drift: local sweeps at widths {fit_widths(rec)} ({rec.transfer.fit_points} LRs x "
        f"{len(rec.transfer.fit_seeds)} seeds each)")
    fit = fit_drift(rec, values, min(widths), progress=None if quiet else say)
    if fit.applied:
        say(f"drift fit ({fit.form}): {fit.slope:+.3f} [{fit.lo:+.3f}, {fit.hi:+.3f}] octaves per width doubling "
            f"across widths {fit.widths}; "
            f"{'' if not fit.reason else fit.reason + '; '}target LR corrected by it")
    else:
        msg = f"drift fit not applied: {fit.reason}. The tuned LR is used as is."
        notes.append(msg)
        warnings.warn(msg, HPTransferWarning, stacklevel=3)
    return fit


def _spec(rec: Recipe | None, values: dict[str, Any], width: int, *, factory: Any, base_width: int | None,
          parametrization: str, optimizer: str, batch_size: int | None, steps: int | None) -> RunSpec:
    """The target's run spec: from the recipe (``Recipe.at``), or from the function form's arguments."""
    if rec is not None:
        return rec.at(width, values, steps=steps, batch_size=batch_size, depth=rec.depths.target)
    if factory is None:
        raise TransferError("transfer(...) from a Python study needs factory= (your width -> nn.Module).")
    if base_width is None:
        raise TransferError("transfer(...) from a Python study needs base_width= (the width you tuned at).")
    path = f"{getattr(factory, '__module__', '')}:{getattr(factory, '__qualname__', '')}"
    importable = "<" not in path and not path.startswith(":")
    spec = RunSpec(width=int(width), model=ModelSpec(factory=path if importable else None), task=TaskSpec(),
                   parametrization=ParametrizationSpec(name=parametrization, base_width=int(base_width)),
                   optimizer=OptimizerSpec(name=optimizer), schedule=ScheduleSpec(),
                   train=RunTrainSpec(batch_size=batch_size, steps=steps))
    return spec.with_values(values)


def _target_file(spec: RunSpec, factory: Any, best: dict[str, Any], rec: Recipe | None, law: str,
                 notes: list[str], proxy_values: dict[str, Any]) -> TargetFile:
    """Groups and base shapes from a build on the meta device (no memory, no init), plus provenance."""
    built = build(spec, factory=factory, device="meta", role="target")
    table = scaling_table(built.model)
    groups = [{"params": list(g["param_names"]), "lr": float(g["lr"]), "weight_decay": float(g["weight_decay"]),
               "lr_mult": float(g["lr_mult"])} for g in built.optimizer.param_groups]
    seeds = list(rec.train.seeds) if rec else None
    return TargetFile(
        spec=spec, groups=groups, base_shapes={n: list(i.base_shape) for n, i in table.params.items()},
        transfer={"law": law, "citation": LAW_CITATIONS.get(law), "warnings": list(notes),
                  "proxy_values": {k: v for k, v in proxy_values.items() if v is not None}},
        provenance={
            "study": best["study"], "storage": redact_url(best["storage"]), "trial": best["trial"],
            "proxy_loss": best["value"], "recipe_hash": best["recipe_hash"],
            "recipe": rec.source if rec else None, "hptransfer_version": __version__,
            "seeds": seeds, "sampler_seed": rec.tune.seed if rec else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


@dataclass
class Loaded:
    """What :func:`load` returns; unpacks as ``model, optimizer = load(...)``.

    ``schedule`` (an :class:`hptransfer.training.Schedule`), ``spec`` (the run spec),
    ``values`` (HP values) and ``config`` (the whole target.yaml) come along for training code
    that wants them.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule | None
    spec: RunSpec
    config: dict[str, Any]

    @property
    def values(self) -> dict[str, Any]:
        return self.spec.values()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.optimizer))


def load(
    path: str | Path,
    *,
    factory: Callable[..., nn.Module] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> Loaded:
    """Rebuild model and optimizer from a ``target.yaml`` written by :func:`transfer`.

    Args:
        path: the target file.
        factory: your ``width -> nn.Module``; default the one recorded (built-in name or import path).
        seed: ``torch.manual_seed(seed)`` before the model is built. Default: the spec's seed.
        device: move the model there before the optimizer is built. Default: where the factory puts it.

    Raises:
        TransferError: the file is not a current target file, the factory cannot be found, or the
            model's base shapes or LRs differ from the recorded ones (another architecture).
    """
    p = Path(path)
    tf = read_target(p)
    spec = tf.spec if seed is None else tf.spec.replace(seed=int(seed))
    if factory is None and not spec.model.names_model:
        raise TransferError(f"{p} records no importable model factory. Fix: pass factory= to hptransfer.load().")
    built = build(spec, factory=factory, device=device, role="target")
    got = {n: list(i.base_shape) for n, i in scaling_table(built.model).params.items()}
    if tf.base_shapes and got != tf.base_shapes:
        diff = sorted(set(tf.base_shapes).symmetric_difference(got)) or \
            [n for n in got if got[n] != tf.base_shapes.get(n)]
        raise TransferError(f"{p}: the factory builds a different model than the one tuned (base shapes differ "
                            f"at {diff[:4]}). Fix: use the same architecture and kwargs as the recipe.")
    want = {n: g["lr"] for g in tf.groups for n in g["params"]}
    for g in built.optimizer.param_groups:
        for n in g.get("param_names", []):
            if n in want and abs(want[n] - g["lr"]) > 1e-9 * max(1.0, abs(want[n])):
                raise TransferError(f"{p}: parameter {n!r} gets LR {g['lr']:.3g} here but {want[n]:.3g} in the "
                                    "file. Fix: rebuild with the hptransfer version that wrote it.")
    return Loaded(built.model, built.optimizer, make_schedule(spec), spec, tf.to_dict())
