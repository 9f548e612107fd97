"""``transfer`` and ``load``: carry the best proxy values to the target width, and rebuild there.

:func:`transfer` takes the best feasible trial of a study and writes one ``target.yaml`` per
target width: the concrete HP values, the optimizer groups (per-group LR and weight decay, as
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
import yaml
from torch import nn

from . import _build, _storage
from ._io import write_text_atomic
from .errors import HPTransferError
from .optim import param_groups
from .parametrize import parametrize
from .recipe import Recipe, load_recipe
from .table import scaling_table
from .train import Schedule
from .tune import TuneResult

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
    """One transferred configuration: ``width``, full HP ``values``, the written ``path`` and ``config``."""

    width: int
    values: dict[str, Any]
    path: Path | None
    config: dict[str, Any]


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
    parametrization: str = "mup",
    optimizer: str = "adamw",
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
    """
    rec, best = _source(source, overrides)
    widths = _widths(target_widths if target_widths is not None else (list(rec.widths.target) if rec else None))
    if rec is not None:
        batch_size = batch_size or rec.transfer.batch_size or rec.train.batch_size
        steps = steps or rec.transfer.steps or rec.train.steps
        law = law or rec.transfer.law
    law = law or "none"
    if law not in ("none", *LAW_CITATIONS):
        raise HPTransferError(f"transfer law={law!r} is unknown. Fix: use none, step_law or deepseek.")
    values = dict(best["values"])
    notes = _horizon_warnings(rec, batch_size, steps, law, values, quiet)
    out_dir = Path(out) if out is not None else (rec.run_dir if rec else Path("."))
    targets = []
    for w in widths:
        cfg = _config(rec, values, w, best, factory=factory, base_width=base_width, parametrization=parametrization,
                      optimizer=optimizer, batch_size=batch_size, steps=steps, notes=notes, law=law)
        targets.append(Target(w, values, None, cfg))
    for t in targets:
        if out_dir.suffix in (".yaml", ".yml") and len(targets) == 1:
            t.path = out_dir
        elif len(targets) == 1 or t is max(targets, key=lambda x: x.width):
            t.path = out_dir / "target.yaml"
        else:
            t.path = out_dir / f"target_w{t.width}.yaml"
        t.path.parent.mkdir(parents=True, exist_ok=True)
        text = _HEADER + yaml.safe_dump(t.config, sort_keys=False, width=100)
        write_text_atomic(t.path, text)
        if len(targets) > 1 and t.path.name == "target.yaml":
            write_text_atomic(out_dir / f"target_w{t.width}.yaml", text)
    return targets


_HEADER = ("# Written by hptransfer.transfer. Rebuild in training code:\n"
           "#   model, opt = hptransfer.load(\"<this file>\")\n")


def _source(source: Any, overrides: list[str] | None) -> tuple[Recipe | None, dict[str, Any]]:
    """(recipe or None, best-trial facts) from a recipe or a TuneResult."""
    if isinstance(source, TuneResult):
        rec, url, name = source.recipe, source.storage, source.study_name
    else:
        rec = source if isinstance(source, Recipe) else load_recipe(source, overrides)
        url, name = _storage.storage_url(rec.tune.storage, rec.run_dir), rec.study_name
    study = _storage.load_study(url, name)
    try:
        trial = study.best_trial
    except ValueError:
        raise HPTransferError(f"study {name!r} has no finished, non-diverged trial to transfer. Fix: run "
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
        raise HPTransferError("transfer(...) needs target_widths= when the source has no recipe.")
    items = [widths] if isinstance(widths, int) else list(widths)
    if not items or not all(isinstance(w, int) and w > 0 for w in items):
        raise HPTransferError(f"target_widths={widths!r}: give a positive integer or a list of them.")
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
    warnings.warn(" ".join(notes), stacklevel=3)
    if not quiet:
        bar = "!" * 78
        print(f"{bar}\nWARNING: {notes[0]}\n{' '.join(notes[1:])}\n{bar}", file=sys.stderr)
    return notes


def _config(rec: Recipe | None, values: dict[str, Any], width: int, best: dict[str, Any], *, factory: Any,
            base_width: int | None, parametrization: str, optimizer: str, batch_size: int | None,
            steps: int | None, notes: list[str], law: str) -> dict[str, Any]:
    """The target.yaml content for one width (model built on the meta device: no memory, no init)."""
    if rec is not None:
        task = _build.make_task(rec)
        fac = _build.make_factory(rec, task)
        popts = _build.parametrize_options(rec, values)
        opt = rec.optimizer
        model_spec = {"name": rec.model.name, "factory": rec.model.factory, "kwargs": dict(rec.model.kwargs),
                      "width_arg": rec.model.width_arg}
        if rec.model.name is not None and task is not None:
            model_spec["kwargs"] = {**task.model_kwargs(), **rec.model.kwargs}
        opt_spec = {"name": opt.name, "weight_decay_mode": opt.weight_decay_mode, "decay": opt.decay,
                    "grad_clip": opt.grad_clip}
        sched = {"warmup": float(values.get("warmup") or 0.0), "decay": rec.schedule.decay,
                 "min_lr_frac": float(values.get("min_lr_frac", rec.schedule.min_lr_frac))}
        task_spec = {"name": rec.task.name, "train_fn": rec.task.train_fn, "kwargs": dict(rec.task.kwargs)}
        seeds = list(rec.train.seeds)
    else:
        if factory is None:
            raise HPTransferError("transfer(...) from a Python study needs factory= (your width -> nn.Module).")
        fac, task = factory, None
        popts = {"base_width": base_width, "parametrization": parametrization,
                 "output_mult": float(values.get("output_mult", 1.0)), "attn_mult": float(values.get("attn_mult", 1.0)),
                 "base_std": values.get("init_std"), "zero_readout": False, "zero_query": False}
        if popts["base_width"] is None:
            raise HPTransferError("transfer(...) from a Python study needs base_width= (the width you tuned at).")
        path = f"{getattr(factory, '__module__', '')}:{getattr(factory, '__qualname__', '')}"
        importable = "<" not in path and not path.startswith(":")
        model_spec = {"name": None, "factory": path if importable else None, "kwargs": {}, "width_arg": None}
        opt_spec = {"name": optimizer, "weight_decay_mode": "coupled", "decay": "all", "grad_clip": None}
        sched, task_spec, seeds = None, None, None
    for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum"):
        values.setdefault(k, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}.get(k, 0.0))
    with torch.device("meta"):
        model = parametrize(fac, width=width, **popts)
    table = scaling_table(model)
    groups = param_groups(model, lr=float(values["lr"]), weight_decay=float(values.get("weight_decay") or 0.0),
                          optimizer=opt_spec["name"], weight_decay_mode=opt_spec["weight_decay_mode"],
                          decay=opt_spec["decay"])
    opt_spec["kwargs"] = ({"momentum": float(values.get("momentum") or 0.0)} if opt_spec["name"] == "sgd" else
                          {"betas": [float(values["beta1"]), float(values["beta2"])], "eps": float(values["eps"])})
    opt_spec["groups"] = [{"params": g["param_names"], "lr": g["lr"], "weight_decay": g["weight_decay"],
                           "lr_mult": g["lr_mult"]} for g in groups]
    from . import __version__

    return {
        "width": width,
        "values": {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                   for k, v in values.items()},
        "model": model_spec,
        "task": task_spec,
        "parametrization": {"name": popts["parametrization"], "base_width": popts["base_width"],
                            "options": {k: popts[k] for k in ("output_mult", "attn_mult", "base_std", "zero_readout",
                                                              "zero_query")}},
        "base_shapes": {n: list(i.base_shape) for n, i in table.params.items()},
        "optimizer": opt_spec,
        "schedule": sched,
        "train": {"batch_size": batch_size, "steps": steps, "seeds": seeds},
        "transfer": {"law": law, "citation": LAW_CITATIONS.get(law), "warnings": notes},
        "provenance": {
            "study": best["study"], "storage": best["storage"], "trial": best["trial"],
            "proxy_loss": best["value"], "recipe_hash": best["recipe_hash"],
            "recipe": rec.source if rec else None, "hptransfer_version": __version__,
            "seeds": seeds, "sampler_seed": rec.tune.seed if rec else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }


@dataclass
class Loaded:
    """What :func:`load` returns; unpacks as ``model, optimizer = load(...)``.

    ``schedule`` (an :class:`hptransfer.train.Schedule` or ``None``), ``values`` (HP values)
    and ``config`` (the whole target.yaml) come along for training code that wants them.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule | None
    values: dict[str, Any]
    config: dict[str, Any]

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
        seed: ``torch.manual_seed(seed)`` before the model is built (default: leave the RNG alone).
        device: move the model there before the optimizer is built. Default: where the factory puts it.

    Raises:
        HPTransferError: the file is not a target file, the factory cannot be found, or the model's
            base shapes differ from the recorded ones (a different architecture than the one tuned).
    """
    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise HPTransferError(f"cannot read target file {p}: {exc}. Fix: pass the target.yaml that "
                              "`hptransfer transfer` wrote.") from None
    if not isinstance(cfg, dict) or not {"width", "values", "parametrization", "optimizer"} <= set(cfg):
        raise HPTransferError(f"{p} is not a target file (needs width, values, parametrization, optimizer).")
    fac = factory or _recorded_factory(cfg, p)
    opts = dict(cfg["parametrization"]["options"])
    task = cfg.get("task") or {}
    example = None
    if task.get("name"):
        from .tasks import get_task

        example = get_task(task["name"], **task.get("kwargs", {})).example_input()
    if seed is not None:
        torch.manual_seed(seed)
    model = parametrize(fac, width=cfg["width"], base_width=cfg["parametrization"]["base_width"],
                        parametrization=cfg["parametrization"]["name"], example_input=example, **opts)
    table = scaling_table(model)
    recorded = cfg.get("base_shapes") or {}
    got = {n: list(i.base_shape) for n, i in table.params.items()}
    if recorded and got != recorded:
        diff = sorted(set(recorded).symmetric_difference(got)) or [n for n in got if got[n] != recorded.get(n)]
        raise HPTransferError(f"{p}: the factory builds a different model than the one tuned (base shapes differ "
                              f"at {diff[:4]}). Fix: use the same architecture and kwargs as the recipe.")
    if device is not None:
        model = model.to(device)
    o, v = cfg["optimizer"], cfg["values"]
    groups = param_groups(model, lr=float(v["lr"]), weight_decay=float(v.get("weight_decay") or 0.0),
                          optimizer=o["name"], weight_decay_mode=o["weight_decay_mode"], decay=o["decay"])
    want = {n: g["lr"] for g in o.get("groups", []) for n in g["params"]}
    for g in groups:
        for n in g["param_names"]:
            if n in want and abs(want[n] - g["lr"]) > 1e-9 * max(1.0, abs(want[n])):
                raise HPTransferError(f"{p}: parameter {n!r} gets LR {g['lr']:.3g} here but {want[n]:.3g} in the "
                                      "file. Fix: rebuild with the hptransfer version that wrote it.")
    cls = _build.OPTIMIZER_CLASSES[o["name"]]
    kwargs = dict(o.get("kwargs") or {})
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    opt = cls(groups, lr=float(v["lr"]), **kwargs)
    sched = Schedule(**cfg["schedule"]) if cfg.get("schedule") else None
    return Loaded(model, opt, sched, dict(v), cfg)


def _recorded_factory(cfg: dict[str, Any], p: Path) -> Callable[..., nn.Module]:
    m = cfg.get("model") or {}
    if m.get("name"):
        from .models import get_model

        return _build._WidthFactory(get_model(m["name"]), m.get("kwargs") or {}, m.get("width_arg") or "width")
    if m.get("factory"):
        from .recipe import import_object

        fn = import_object(m["factory"], f"{p}: model.factory")
        if m.get("width_arg"):
            return _build._WidthFactory(fn, m.get("kwargs") or {}, m["width_arg"])
        return fn
    raise HPTransferError(f"{p} records no importable model factory. Fix: pass factory= to hptransfer.load().")
