"""Reproduce the measurements behind the coordinate-check tolerances (docs/coord_check.md).

Runs :func:`hptransfer.coord_check` on the reference MLP, GPT (untied and tied) and CNN under
μP, SP and two deliberately broken μP variants (hidden LR too small; readout LR too small), and
prints per run the extreme slopes (see :func:`measure` for the columns) with the module@step
where each occurs. Slopes are log2(mean |h|) or log2(mean |h_t - h_0|) per doubling of width.

Usage::

    python scripts/coord_thresholds.py                  # reference sizes (~1-3 min on 2 CPU cores)
    python scripts/coord_thresholds.py --preset tests   # the smaller sizes the tests use
    python scripts/coord_thresholds.py --models mlp --variants mup,sp --lr 3e-2

The numbers depend only on the seeds (0-2 by default), so reruns print the same table.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from hptransfer import coord_check
from hptransfer.coord import DEFAULT_TOL_GROW, DEFAULT_TOL_VANISH, CoordCheckResult
from hptransfer.models import cnn, gpt, mlp
from hptransfer.parametrization import MuP, ParamInfo, register_parametrization
from hptransfer.tasks import ImageClassificationTask, get_task


def setups(preset: str, block_size: int) -> dict[str, tuple[Callable[..., torch.nn.Module], Any, tuple[int, ...], int]]:
    """model name -> (factory, task, widths, batch size) for the ``reference`` or ``tests`` preset."""
    if preset == "tests":  # the sizes tests/coord/test_coord.py uses: smaller widths, larger finite-width effects
        charlm = get_task("charlm", block_size=16, n_bytes=200_000)
        small = functools.partial(gpt, n_layer=2, **charlm.model_kwargs())
        return {
            "mlp": (functools.partial(mlp, depth=3), get_task("classification"), (32, 64, 128, 256), 32),
            "gpt": (small, charlm, (32, 64, 128), 8),
            "gpt-tied": (functools.partial(small, tied=True), charlm, (32, 64, 128), 8),
            "gpt-16": (small, charlm, (16, 32, 64), 8),
            "cnn": (cnn, ImageClassificationTask(), (16, 32, 64, 128), 32),
        }
    charlm = get_task("charlm", block_size=block_size)
    return {
        "mlp": (functools.partial(mlp, depth=3), get_task("classification"), (64, 128, 256, 512, 1024), 32),
        "gpt": (functools.partial(gpt, n_layer=2, **charlm.model_kwargs()), charlm, (32, 64, 128, 256), 8),
        "gpt-tied": (functools.partial(gpt, n_layer=2, tied=True, **charlm.model_kwargs()), charlm,
                     (32, 64, 128, 256), 8),
        "cnn": (cnn, ImageClassificationTask(), (16, 32, 64, 128, 256), 32),
    }


@register_parametrization("mup-bug-hidden-lr")
class _HiddenLRTooSmall(MuP):
    """A deliberately wrong μP: hidden Adam LR divided by fan_in_mult twice (vanishing updates)."""

    def lr_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        mult = super().lr_mult(info, family, readout_hooked=readout_hooked)
        return mult / info.fan_in_mult if info.role == "hidden" else mult


@register_parametrization("mup-bug-readout-lr")
class _ReadoutLRTooSmall(MuP):
    """A deliberately wrong μP: readout LR divided by fan_in_mult (its update vanishes)."""

    def lr_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        mult = super().lr_mult(info, family, readout_hooked=readout_hooked)
        return mult / info.fan_in_mult if info.role == "output" else mult


def measure(res: CoordCheckResult) -> dict[str, tuple[float, str]]:
    """Extreme slopes of one run, each with the ``module@step`` where it occurs.

    ``grow``: largest activation (any step) or update (steps >= 1) slope. ``upd_all`` /
    ``upd_last``: most negative update slope of width-sized modules over steps >= 1 / at the
    final step. ``fixed``: most negative update slope of fixed-size outputs (steps >= 1).
    ``weakest``: over modules that fail, the smallest |worst slope| (the weakest signal the
    check had to catch).
    """
    out: dict[str, tuple[float, str]] = {
        "grow": (-math.inf, ""), "upd_all": (math.inf, ""), "upd_last": (math.inf, ""),
        "fixed": (math.inf, ""), "weakest": (math.nan, ""),
    }
    last = res.steps[-1]

    def keep(key: str, value: float, where: str, larger: bool) -> None:
        if math.isnan(value):
            return
        if (value > out[key][0]) if larger else (value < out[key][0]):
            out[key] = (value, where)

    for m in res.modules:
        for t in res.steps:
            keep("grow", res.slopes[m][t], f"{m}@{t}", True)
            if t == 0:
                continue
            u = res.update_slopes[m][t]
            keep("grow", u, f"{m}@{t}", True)
            if m in res.fixed_size:
                keep("fixed", u, f"{m}@{t}", False)
            else:
                keep("upd_all", u, f"{m}@{t}", False)
                if t == last:
                    keep("upd_last", u, f"{m}@{t}", False)
    worst: dict[str, float] = {}
    for m, _, _, s in res.failing:
        worst.setdefault(m, s)  # failing is sorted worst first
    if worst:
        m = min(worst, key=lambda k: abs(worst[k]))
        out["weakest"] = (worst[m], m)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma list (default: all of the preset)")
    ap.add_argument("--variants", default="mup,sp,mup-bug-hidden-lr,mup-bug-readout-lr")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--steps", type=int, default=None, help="default 4 (reference) or 2 (tests)")
    ap.add_argument("--preset", choices=("reference", "tests"), default="reference",
                    help="reference sizes (docs table) or the smaller sizes of tests/coord/test_coord.py")
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--block-size", type=int, default=32, help="GPT context length (default 32)")
    args = ap.parse_args()
    table = setups(args.preset, args.block_size)
    steps = args.steps or (4 if args.preset == "reference" else 2)
    seeds = (0, 1, 2) if args.preset == "reference" else (0, 1)
    print(f"default tolerances: grow {DEFAULT_TOL_GROW}, vanish {DEFAULT_TOL_VANISH} "
          f"(fixed-size outputs: vanish + 0.5); {args.optimizer} lr={args.lr:g}, {steps} steps, seeds {seeds}")
    cols = ("grow", "upd_all", "upd_last", "fixed", "weakest")
    print(f"{'model':8s} {'variant':18s} {'pass':5s} " + " ".join(f"{c:>30s}" for c in cols) + f" {'sec':>4s}")
    for name in args.models.split(",") if args.models else table:
        factory, task, widths, bs = table[name]
        for variant in args.variants.split(","):
            t0 = time.perf_counter()
            res = coord_check(factory, widths=widths, parametrization=variant, task=task, steps=steps,
                              seeds=seeds, lr=args.lr, optimizer=args.optimizer, batch_size=bs)
            dt = time.perf_counter() - t0
            e = measure(res)
            cells = " ".join(f"{e[c][0]:+6.2f} {e[c][1][-23:]:>23s}" for c in cols)
            print(f"{name:8s} {variant:18s} {res.passed!s:5s} {cells} {dt:4.0f}", flush=True)


if __name__ == "__main__":
    main()
