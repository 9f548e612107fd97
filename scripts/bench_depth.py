"""Depth transfer and Muon, measured with the verification check on the reference GPT (byte-level LM).

Three parts, all from ``recipes/gpt_depth.yaml`` (GPT, AdamW + cosine, charlm with 32-token blocks):

* ``drift`` -- ``check_recipe(axis="depth")``: the LR swept over a whole-octave grid at depths 2..16
  (full) at the fixed width 32, 2 seeds, under ``completep`` and plain ``mup`` (built at each depth, no
  depth scaling); ``--quick`` adds ``depth-mup``. Drift = slope of the optimal log2 LR against log2 depth, octaves per
  depth doubling; the issue's bar for CompleteP is |drift| <= 0.2 (the check's tolerance is set to it).
* ``muon`` -- the width check (widths 32, 64, 128 at depth 2, ``mup``) with ``optimizer: muon`` (Muon on
  hidden matrices at ``muon_lr_ratio`` x the LR, AdamW on the rest) and with ``adamw``: drift, regret and
  the best loss at the widest width, on the same task, grid and seeds.
* ``coord`` -- the coordinate check along depth (width 32, the same depths) under ``mup``, ``depth-mup``
  and ``completep``: pass/fail and the worst slopes of the modules outside the block stack.
* ``gap`` -- ``hptransfer run`` on the recipe (tune at width 32 / depth 2, transfer to width 128 / depth 8,
  4x each), then a direct LR sweep at the target: the transferred LR x 2^(k/2), k = -4..4, every other HP
  at its transferred value, same seed. Gap = (L_transfer - min L_sweep) / min L_sweep; the bar is 1%.

Usage: ``python scripts/bench_depth.py [--quick] [--parts drift,muon,gap] [--workers N]``.
Full results go to ``docs/depth/`` (JSON + Markdown) and ``docs/img/depth_drift.png``; ``--quick`` (about a
minute or two per part, shorter runs and fewer depths) writes to ``runs/bench_depth_quick/`` instead.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

RECIPE = "recipes/gpt_depth.yaml"
FULL = {"depths": [2, 4, 8, 16], "steps": 150, "lr": (2.0 ** -9, 2.0 ** -2), "widths": [32, 64, 128],
        "ks": list(range(-4, 5)), "compare": ["completep", "mup"]}
QUICK = {"depths": [2, 4, 8], "steps": 30, "lr": (2.0 ** -6, 2.0 ** -2), "widths": [32, 64, 128],
         "ks": [-2, 0, 2], "compare": ["completep", "depth-mup", "mup"]}


def _check(overrides: list[str], out: Path, *, axis: str, compare: list[str], workers: int) -> Any:
    from hptransfer.check import check_recipe
    from hptransfer.recipe import load_recipe

    recipe = load_recipe(RECIPE, [*overrides, f"out={out}"])
    return check_recipe(recipe, compare=compare, expect={p: "any" for p in compare}, workers=workers, axis=axis,
                        progress=lambda m: print(m, flush=True))


def _row(report: Any, p: str) -> dict[str, Any]:
    r = report.result(p)
    d = r.drift
    widest = [v for v in r.losses[-1].mean(axis=-1) if math.isfinite(v)]
    return {"parametrization": p, "drift": d.slope, "drift_ci": [d.lo, d.hi], "regret_rel": r.regret_rel,
            "verdict": r.verdict, "optima_log2_lr": [o.x for o in r.optima], "points": list(r.widths),
            "best_loss_at_largest": min(widest) if widest else math.inf, "reasons": list(r.reasons)}


def part_drift(cfg: dict[str, Any], out: Path, img: Path, workers: int) -> dict[str, Any]:
    lo, hi = cfg["lr"]
    overrides = [f"check.depths={cfg['depths']}", f"check.steps={cfg['steps']}", "check.seeds=[0, 1]",
                 f"check.lr={{low: {lo}, high: {hi}, per_octave: 1}}", "check.tolerances.max_drift=0.2"]
    report = _check(overrides, out / "drift_run", axis="depth", compare=cfg["compare"], workers=workers)
    print(report.summary())
    report.plot(img)
    return {"rows": [_row(report, p) for p in cfg["compare"]], "summary": report.summary(),
            "width": 32, "depths": cfg["depths"], "steps": cfg["steps"], "plot": str(img)}


def part_muon(cfg: dict[str, Any], out: Path, workers: int) -> dict[str, Any]:
    lo, hi = cfg["lr"]
    rows = []
    for opt in ("muon", "adamw"):
        overrides = ["parametrization.name=mup", f"optimizer.name={opt}", f"check.widths={cfg['widths']}",
                     f"check.steps={cfg['steps']}", "check.seeds=[0, 1]",
                     f"check.lr={{low: {lo}, high: {hi}, per_octave: 1}}"]
        report = _check(overrides, out / f"muon_{opt}", axis="width", compare=["mup"], workers=workers)
        print(report.summary())
        rows.append({"optimizer": opt, **_row(report, "mup")})
    return {"rows": rows, "widths": cfg["widths"], "steps": cfg["steps"]}


def part_coord(cfg: dict[str, Any]) -> dict[str, Any]:
    """The coordinate check along depth (GPT width 32, Adam lr 1e-2, 4 steps, 2 seeds) per parametrization."""
    import hptransfer as hpt
    from hptransfer.tasks import get_task

    task = get_task("charlm", block_size=32)
    rows = []
    for p in ("mup", "depth-mup", "completep"):
        r = hpt.coord_check(_gpt_bytes, widths=[32], depths=cfg["depths"], parametrization=p, task=task, steps=4,
                            seeds=(0, 1), batch_size=8, lr=1e-2)
        grow = max((max(v[1:]) for v in r.slopes.values()), default=math.nan)
        upd = max((max(v[1:]) for v in r.update_slopes.values()), default=math.nan)
        rows.append({"parametrization": p, "passed": r.passed, "worst_act_slope": grow, "worst_update_slope": upd,
                     "failing": [list(f) for f in r.failing[:3]], "modules": r.modules})
        print(p, "PASS" if r.passed else "FAIL", r.failing[:2], flush=True)
    return {"rows": rows, "depths": cfg["depths"], "width": 32}


def _gpt_bytes(width: int, depth: int) -> Any:
    from hptransfer.models import gpt

    return gpt(width, n_layer=depth, n_head=2, vocab_size=256, block_size=32)


def part_gap(cfg: dict[str, Any], out: Path, quick: bool) -> dict[str, Any]:
    import hptransfer
    from hptransfer.training import train_spec

    sets = ["train.steps=30", "tune.trials=6"] if quick else []
    res = hptransfer.run(RECIPE, out=out / "gap_run", quiet=True, overrides=sets, threads=1)
    target = max(res.targets, key=lambda t: t.width)
    lr0 = float(target.spec.optimizer.lr)
    sweep = []
    for k in cfg["ks"]:
        r = train_spec(target.spec.with_values({"lr": lr0 * 2.0 ** (k / 2)}))
        sweep.append({"k": k, "lr": lr0 * 2.0 ** (k / 2), "loss": r.val_loss, "diverged": r.diverged})
        print(f"sweep k={k:+d} lr={sweep[-1]['lr']:.4g} loss={r.val_loss:.4f}", flush=True)
    best = min(s["loss"] for s in sweep if math.isfinite(s["loss"]))
    return {"target_width": target.width, "target_depth": target.spec.depth, "proxy_loss": res.proxy_loss,
            "transferred_lr": lr0, "transferred_loss": res.target_loss, "sweep": sweep, "best_sweep_loss": best,
            "gap_rel": (res.target_loss - best) / best, "compute_ratio": res.compute_ratio,
            "check_passed": res.check_passed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs, depths 2..8 (about a minute per part)")
    ap.add_argument("--parts", default="drift,coord,muon,gap")
    ap.add_argument("--workers", type=int, default=1, help="check worker processes (one torch thread each)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # small models; several threads spin-wait on a shared 2-core machine
    cfg = QUICK if args.quick else FULL
    out = Path("runs/bench_depth_quick" if args.quick else "docs/depth")
    img = out / "depth_drift.png" if args.quick else Path("docs/img/depth_drift.png")
    out.mkdir(parents=True, exist_ok=True)
    machine = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": platform.machine(),
               "cpus": __import__("os").cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
               "quick": args.quick}
    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        start = time.perf_counter()
        scratch = Path("runs/bench_depth_scratch" + ("_quick" if args.quick else "")) / part
        if part == "drift":
            result = part_drift(cfg, scratch, img, args.workers)
        elif part == "coord":
            result = part_coord(cfg)
        elif part == "muon":
            result = part_muon(cfg, scratch, args.workers)
        elif part == "gap":
            result = part_gap(cfg, scratch, args.quick)
        else:
            raise SystemExit(f"unknown part {part!r}: use drift, coord, muon, gap")
        result.update(machine, seconds=time.perf_counter() - start)
        (out / f"{part}.json").write_text(json.dumps(result, indent=1, default=float))
        print(f"{part}: done in {result['seconds']:.0f} s -> {out / (part + '.json')}", flush=True)


if __name__ == "__main__":
    main()
