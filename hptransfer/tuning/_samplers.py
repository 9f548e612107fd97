"""Optuna samplers and pruners by recipe name (``tune.sampler``, ``tune.pruner``)."""

from __future__ import annotations

import optuna

from ..errors import RecipeError
from ..recipe import PRUNERS, SAMPLERS

__all__ = ["make_sampler", "make_pruner"]


def make_sampler(name: str, seed: int | None = None, startup: int = 8) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by recipe name (``gp``, ``tpe``, ``random``, ``qmc``) with ``startup`` random trials."""
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    raise RecipeError([("tune.sampler", f"unknown sampler {name!r}. Fix: use one of {', '.join(SAMPLERS)}.")])


def make_pruner(name: str, max_resource: int) -> optuna.pruners.BasePruner:
    """An Optuna pruner by recipe name; resources are training steps (``max_resource`` in all)."""
    low = max(1, max_resource // 10)
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=low)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=low)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=low, max_resource=max_resource)
    raise RecipeError([("tune.pruner", f"unknown pruner {name!r}. Fix: use one of {', '.join(PRUNERS)}.")])
