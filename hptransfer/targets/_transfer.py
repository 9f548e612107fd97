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

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import redact_url
from .._version import __version__
from ..diagnostics._breakers import horizon_key
from ..errors import TransferError, info, warn
from ..parametrization import lr_scheduler, scaling_table
from ..recipe import Recipe, RunSpec, amend, load_recipe
from ..studies import load_study, storage_url
from ..training import Schedule, build
from ..training._build import make_schedule
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
    parametrization: str | None = None,
    optimizer: str | None = None,
    batch_size: int | None = None,
    steps: int | None = None,
    law: str | None = None,
    overrides: list[str] | None = None,
    quiet: bool = False,
) -> list[Target]:
    """Carry the best proxy values to each target width and write ``target.yaml`` file(s).

    One implementation for both doors: the keyword arguments amend the source's recipe (the one a
    :class:`TuneResult` carries, the Python form's too), and the targets are that recipe's runs at
    the target widths (:meth:`Recipe.at`). What ``target.yaml`` records is what the target trains with:
    a law or a drift correction only when applied, and no optimizer, schedule or parametrization that a
    ``train_fn`` study left to the user's code (unless given here).

    Args:
        source: a recipe (path or :class:`Recipe`; its study is opened from ``tune.storage``) or
            the :class:`TuneResult` of :func:`hptransfer.tune`.
        target_widths: default the recipe's ``widths.target``; required when it has none.
        out: a folder (default: the recipe's run folder) or, for one width, a ``.yaml`` file.
            One width writes ``target.yaml``; several write ``target_w<width>.yaml`` each and
            ``target.yaml`` for the largest.
        factory: your ``width -> nn.Module`` (``model.factory``), for a study whose recipe names no model
            (``tune(train_fn, ...)``); ``load`` rebuilds it from there.
        base_width, parametrization: how that model is parametrized (``parametrization.base_width`` and
            ``.name``; defaults: the proxy width and ``mup``, as :func:`hptransfer.parametrize` has them).
        optimizer: ``optimizer.name`` of the target (default: the recipe's; none for a ``train_fn`` study).
        batch_size, steps: target batch size / steps if they differ from the proxy's (warned).
        law: ``none``, ``step_law`` or ``deepseek``: LR rescaling when they differ (``transfer.law``);
            refused when the proxy's batch size or steps are not known.
        overrides: ``"section.field=value"`` recipe overrides.
        quiet: no status lines (warnings are still logged).

    Returns:
        One :class:`Target` per width.

    Raises:
        TransferError: no usable trial, bad widths or law, a law that cannot be applied.
        RecipeError: an argument that does not fit the recipe (named by its field path).
    """
    rec, best = _source(source, overrides)
    rec = amend(rec, data=_changes(rec, target_widths=target_widths, factory=factory, base_width=base_width,
                                   parametrization=parametrization, optimizer=optimizer, batch_size=batch_size,
                                   steps=steps, law=law))
    if rec.widths.target is None:
        raise TransferError("transfer(...) needs target_widths= (the study's recipe has no widths.target). Fix: "
                            "e.g. transfer(result, target_widths=1024).")
    widths = list(rec.widths.target)
    batch_size = rec.transfer.batch_size or rec.train.batch_size
    steps = rec.transfer.steps or rec.train.steps
    values = dict(best["values"])
    proxy_values = dict(values)
    notes, applied = _horizon(rec, batch_size, steps, rec.transfer.law, values)
    fit = _drift_fit(rec, values, widths, notes, quiet) if rec.transfer.drift == "fit" else None
    out_dir = Path(out) if out is not None else rec.run_dir
    targets = []
    for w in widths:
        spec = rec.at(w, {**values, **({"lr": fit.at(w).lr_target} if fit and fit.applied else {})}, steps=steps,
                      batch_size=batch_size, depth=rec.depths.target)
        tf = _target_file(spec, best, rec, applied, notes, proxy_values)
        if fit is not None:  # the fit ran: its outcome, with `applied` and the reason when it was not
            tf.transfer["drift"] = fit.at(spec.width).to_dict()
        targets.append(Target(spec, _write(tf, out_dir, w, widths), tf.to_dict()))
    return targets


def _write(tf: TargetFile, out_dir: Path, width: int, widths: list[int]) -> Path:
    """One width: ``target.yaml`` (or the ``.yaml`` path given); several: ``target_w<width>.yaml`` each, and
    ``target.yaml`` for the largest too."""
    if out_dir.suffix in (".yaml", ".yml") and len(widths) == 1:
        return write_target(out_dir, tf)
    if len(widths) > 1:
        write_target(out_dir / f"target_w{width}.yaml", tf)
    return write_target(out_dir / "target.yaml", tf) if width == max(widths) else out_dir / f"target_w{width}.yaml"


def _changes(rec: Recipe, *, target_widths: Any, factory: Any, base_width: int | None, parametrization: str | None,
             optimizer: str | None, batch_size: int | None, steps: int | None, law: str | None) -> dict[str, Any]:
    """The recipe fields that ``transfer``'s keyword arguments set (only those given)."""
    out: dict[str, Any] = {}
    if target_widths is not None:
        out["widths"] = {"target": [target_widths] if isinstance(target_widths, int) else list(target_widths)}
    if factory is not None:
        out["model"] = {"factory": factory, "name": None, "hf": None}
    par: dict[str, Any] = {}
    if base_width is not None:
        par["base_width"] = base_width
    if parametrization is not None:
        par["name"] = parametrization
    if par or (factory is not None and "parametrization" in rec.user_decides):
        out["parametrization"] = par  # a section now given: parametrize's defaults where not said
    if optimizer is not None:
        out["optimizer"] = {"name": optimizer}
    trans = {k: v for k, v in (("batch_size", batch_size), ("steps", steps), ("law", law)) if v is not None}
    if trans:
        out["transfer"] = trans
    return out


def _source(source: Any, overrides: list[str] | None) -> tuple[Recipe, dict[str, Any]]:
    """(recipe, best-trial facts) from a recipe or a TuneResult."""
    if isinstance(source, TuneResult):
        rec, url, name = source.recipe, source.storage, source.study_name
        if overrides:
            rec = amend(rec, overrides=overrides)
    else:
        rec = source if isinstance(source, Recipe) else load_recipe(source, overrides)
        if overrides and isinstance(source, Recipe):
            rec = amend(rec, overrides=overrides)
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
    return rec, {
        "values": rec.values(dict(trial.params)), "study": name, "storage": url, "trial": trial.number,
        "value": float(trial.values[0]), "recipe_hash": study.user_attrs.get("recipe_hash") or rec.hash,
    }


def _horizon(rec: Recipe, batch: int | None, steps: int | None, law: str, values: dict[str, Any]
             ) -> tuple[list[str], str]:
    """Warn when batch size / steps change (μP does not cover them) and apply the law to ``values``.

    Returns the notes for target.yaml and the law applied (``"none"`` when nothing changed the LR).

    Raises:
        TransferError: a law is asked for but cannot be applied (the proxy's batch size or steps, or
            the ``lr`` it would rescale, are not known).
    """
    p_batch, p_steps = rec.train.batch_size, rec.train.steps
    if (batch, steps) == (p_batch, p_steps):
        return [], "none"
    msg = (f"the target trains with batch_size={batch}, steps={steps} but the proxy was tuned with "
           f"batch_size={p_batch}, steps={p_steps}. μP transfers across WIDTH only; the best LR "
           "also depends on batch size and training length (Bjorck et al., arXiv:2409.19913).")
    notes = [msg]
    if law == "none":
        notes.append("No law applied (transfer.law: none). Keep proxy batch/steps equal to the target's, or opt in "
                     "to transfer.law: step_law | deepseek.")
    else:
        missing = [name for name, v in (("train.steps", p_steps), ("steps", steps)) if v is None]
        if batch != p_batch and (batch is None or p_batch is None):
            missing.append("train.batch_size")
        if missing or "lr" not in values:
            what = f"{' and '.join(missing)} (not known)" if missing else "an `lr` among the tuned values"
            raise TransferError(f"transfer.law={law!r} needs {what} to rescale the LR by the change in tokens. "
                                "Fix: give the proxy's steps and batch_size (tune(..., steps=, batch_size=) or "
                                "`train:`), or use law='none'.")
        ratio = (batch or 1) * (steps or 1) / ((p_batch or 1) * (p_steps or 1))
        f = law_factor(law, 1.0, ratio)
        values["lr"] = float(values["lr"]) * f
        notes.append(f"Applied {law}: LR x {f:.4g}. Citation: {LAW_CITATIONS[law]}")
    # Without a law this says what the breaker diagnosis said before tuning: logged once (the same key).
    warn(" ".join(notes), key=horizon_key((p_batch, p_steps), (batch, steps)) if law == "none" else None)
    return notes, law


def _drift_fit(rec: Recipe, values: dict[str, Any], widths: list[int], notes: list[str], quiet: bool) -> DriftFit:
    """Run the fitted drift correction (``transfer.drift: fit``); a note when it is not applied."""
    say = (lambda msg: None) if quiet else info
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
        warn(msg)
    return fit


def _target_file(spec: RunSpec, best: dict[str, Any], rec: Recipe, law: str, notes: list[str],
                 proxy_values: dict[str, Any]) -> TargetFile:
    """Groups and base shapes from a build on the meta device (no memory, no init), plus provenance.

    A spec that names no model, or leaves the parametrization to the user's code, has neither."""
    groups: list[dict[str, Any]] = []
    shapes: dict[str, list[int]] = {}
    if spec.model.names_model and spec.parametrization is not None:
        built = build(spec, device="meta", role="target")
        shapes = {n: list(i.base_shape) for n, i in scaling_table(built.model).params.items()}
        if built.optimizer is not None:
            groups = [{"params": list(g["param_names"]), "lr": float(g["lr"]), "weight_decay": float(g["weight_decay"]),
                       "lr_mult": float(g["lr_mult"])} for g in built.optimizer.param_groups]
    return TargetFile(
        spec=spec, groups=groups, base_shapes=shapes,
        transfer={"law": law, "citation": LAW_CITATIONS.get(law), "warnings": list(notes),
                  "proxy_values": {k: v for k, v in proxy_values.items() if v is not None}},
        provenance={
            "study": best["study"], "storage": redact_url(best["storage"]), "trial": best["trial"],
            "proxy_loss": best["value"], "recipe_hash": best["recipe_hash"],
            "recipe": rec.source, "hptransfer_version": __version__,
            "seeds": list(rec.train.seeds), "sampler_seed": rec.tune.seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


@dataclass
class Loaded:
    """What :func:`load` returns; unpacks as ``model, optimizer = load(...)``.

    ``scheduler`` (a torch ``LambdaLR`` that follows the recorded schedule over ``spec.train.steps``
    optimizer steps, the same factor in every group), ``schedule`` (its
    :class:`hptransfer.training.Schedule`), ``spec`` (the run spec), ``values`` (HP values) and
    ``config`` (the whole target.yaml) come along for training code that wants them.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    schedule: Schedule | None
    spec: RunSpec
    config: dict[str, Any]

    @property
    def values(self) -> dict[str, Any]:
        return self.spec.values()

    @cached_property
    def scheduler(self) -> torch.optim.lr_scheduler.LambdaLR:
        """The recorded schedule as a torch scheduler on ``optimizer``, built on first access (building
        it sets the groups' LRs to step 0's); call ``.step()`` after each ``optimizer.step()``."""
        if self.optimizer is None or self.schedule is None:
            raise TransferError("this target.yaml records no optimizer or schedule (the study's train_fn built its "
                                "own), so there is no scheduler to build. Fix: schedule as your train_fn does, e.g. "
                                "hptransfer.lr_scheduler(optimizer, lambda step: ...).")
        steps = self.spec.train.steps
        if not steps:
            raise TransferError("target.yaml records no train.steps, so the schedule has no length. Fix: "
                                "hptransfer.lr_scheduler(loaded.optimizer, loaded.schedule, total_steps=N).")
        return lr_scheduler(self.optimizer, self.schedule, total_steps=steps)

    def __iter__(self) -> Iterator[Any]:
        if self.optimizer is None:
            raise TransferError(
                "this target.yaml records no optimizer: the study's train_fn built its own, so hptransfer does not "
                "know it. Fix: take loaded.model and build the optimizer as your train_fn does, with the "
                "transferred values, e.g. hptransfer.optimizer(loaded.model, torch.optim.AdamW, "
                "lr=loaded.values['lr'], ...).")
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
        raise TransferError(f"{p} records no model factory. Fix: pass factory= to hptransfer.load().")
    if spec.parametrization is None:
        raise TransferError(f"{p} records no parametrization: the study's train_fn parametrized the model itself. "
                            "Fix: rebuild it as your code does (hptransfer.parametrize) with the values in "
                            "loaded.values, or transfer with parametrization= and base_width=.")
    built = build(spec, factory=factory, device=device, role="target")
    got = {n: list(i.base_shape) for n, i in scaling_table(built.model).params.items()}
    if tf.base_shapes and got != tf.base_shapes:
        diff = sorted(set(tf.base_shapes).symmetric_difference(got)) or \
            [n for n in got if got[n] != tf.base_shapes.get(n)]
        raise TransferError(f"{p}: the factory builds a different model than the one tuned (base shapes differ "
                            f"at {diff[:4]}). Fix: use the same architecture and kwargs as the recipe.")
    want = {n: g["lr"] for g in tf.groups for n in g["params"]}
    for g in (built.optimizer.param_groups if built.optimizer is not None else []):
        for n in g.get("param_names", []):
            if n in want and abs(want[n] - g["lr"]) > 1e-9 * max(1.0, abs(want[n])):
                raise TransferError(f"{p}: parameter {n!r} gets LR {g['lr']:.3g} here but {want[n]:.3g} in the "
                                    "file. Fix: rebuild with the hptransfer version that wrote it.")
    return Loaded(built.model, built.optimizer, make_schedule(spec), spec, tf.to_dict())
