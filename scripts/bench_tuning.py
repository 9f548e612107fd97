"""Tuning at the target directly vs hptransfer (tune a proxy, transfer, train once): loss and compute.

    python scripts/bench_tuning.py --quick     # CI smoke: target width 512, 6 trials, ~1-2 min
    python scripts/bench_tuning.py             # full: recipes/mlp_quickstart.yaml, target width 2048

Every row tunes the recipe's search space (LR and output multiplier) with the same number of
trials N and then trains the chosen values at the target width with three fresh seeds (100, 101,
102, none of them used while tuning); the row's "target loss" is their mean validation loss.

* ``direct SP (gp)`` / ``direct SP (random)``: N trials of the standard parametrization at the
  target width itself (what a team without μP pays), with the recipe's sampler or random search.
* ``hptransfer μP (gp)``: N trials at the proxy width, ``hptransfer transfer``, 1 target run.
* ``... + median pruning``: the same with Optuna's median pruner stopping poor proxy trials.
* ``... random``: random search on the proxy.
* ``... + drift fit``: ``transfer: {drift: fit}`` (a local LR sweep at 2x and 4x the proxy, 2 seeds;
  ``4 seeds``: ``transfer.fit_seeds: [0, 1, 2, 3]``).

Compute is counted for what each method must train: all tuning trials (pruned ones for the steps
they ran), the fit sweeps, and for hptransfer the one target run (direct tuning's best trial
already is its target run). FLOPs are 6 x parameters x examples (classification: one token per
example); wall time is this machine's, measured in this run (noisy: a shared 2-core machine).
Writes ``results.json`` and ``results.md`` into ``--out`` (default docs/bench/tuning, or
runs/bench_tuning_quick with --quick).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import machine

from hptransfer.recipe import load_recipe
from hptransfer.training import train_spec
from hptransfer.training._build import model_cost

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/mlp_quickstart.yaml"
EVAL_SEEDS = (100, 101, 102)

#: row name -> (mode, overrides). mode "direct": tune at the target; "transfer": tune the proxy.
ROWS: dict[str, tuple[str, list[str]]] = {
    "direct SP (gp)": ("direct", ["parametrization.name=sp"]),
    "direct SP (random)": ("direct", ["parametrization.name=sp", "tune.sampler=random"]),
    "hptransfer μP (gp)": ("transfer", []),
    "hptransfer μP (gp) + median pruning": ("transfer", ["tune.pruner=median"]),
    "hptransfer μP (random)": ("transfer", ["tune.sampler=random"]),
    "hptransfer μP (gp) + drift fit": ("transfer", ["transfer.drift=fit"]),
    "hptransfer μP (gp) + drift fit, 4 seeds": ("transfer", ["transfer.drift=fit", "transfer.fit_seeds=[0, 1, 2, 3]"]),
}


def _trial_flops(study, spec_at, steps: int) -> tuple[float, int]:
    """FLOPs and runs of every finished trial in ``study`` (pruned trials: the steps they ran)."""
    import optuna

    per_step = model_cost(spec_at)["flops"] / steps
    total, n = 0.0, 0
    for t in study.get_trials(deepcopy=False):
        if t.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        ran = t.user_attrs.get("train_steps")
        if ran is None:
            ran = (max(t.intermediate_values) + 1) if t.intermediate_values else steps
        total += per_step * min(int(ran), steps)
        n += 1
    return total, n


def evaluate(spec) -> list[float]:
    return [train_spec(dataclasses.replace(spec, seed=s), role="target").val_loss for s in EVAL_SEEDS]


def run_row(name: str, mode: str, overrides: list[str], args, out: Path) -> dict:
    from hptransfer.targets import transfer
    from hptransfer.tuning import tune

    folder = out / name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "plus").replace("μ", "mu")
    if folder.exists() and not args.resume:
        shutil.rmtree(folder)  # a fresh study per invocation: the wall time is this run's
    width = args.target if mode == "direct" else args.proxy  # where the trials train
    recipe = load_recipe(ROOT / RECIPE, [f"out={folder}", f"name=bench_{folder.name}", f"tune.trials={args.trials}",
                                         f"widths.proxy={width}", f"widths.target={args.target}", *args.set,
                                         *overrides])
    steps = recipe.train.steps
    t0 = time.perf_counter()
    result = tune(recipe, quiet=True)
    tune_s = time.perf_counter() - t0
    flops, runs = _trial_flops(result.study, recipe.at(width, result.best_values), steps)
    row = {"row": name, "mode": mode, "overrides": overrides, "tuned_at": width, "trials": runs,
           "n_pruned": result.n_pruned, "n_diverged": result.n_diverged, "tune_seconds": tune_s}
    if mode == "direct":
        spec = recipe.at(args.target, result.best_values, seed=0)
        fit = None
        transfer_s = 0.0
    else:
        t1 = time.perf_counter()
        target = transfer(recipe, quiet=True)[-1]
        transfer_s = time.perf_counter() - t1
        spec = target.spec
        fit = target.config.get("transfer", {}).get("drift")
        if isinstance(fit, dict):
            flops += float(fit.get("flops") or 0.0)
            runs += int(fit.get("runs") or 0)
    losses = evaluate(spec)
    target_run = model_cost(spec)["flops"]
    # the one target run hptransfer needs (direct tuning's best trial already trained at the target)
    t_run = float(np.nan)
    if mode == "transfer":
        flops += target_run
        runs += 1
        t2 = time.perf_counter()
        train_spec(dataclasses.replace(spec, seed=0), role="target")
        t_run = time.perf_counter() - t2
    row.update({"values": {k: float(v) for k, v in spec.values().items() if isinstance(v, (int, float))},
                "target_losses": losses, "target_loss": float(np.mean(losses)), "target_loss_sd": float(np.std(losses)),
                "flops": flops, "runs": runs, "transfer_seconds": transfer_s,
                "seconds": tune_s + transfer_s + (0.0 if math.isnan(t_run) else t_run),
                "drift_fit": fit if isinstance(fit, dict) else None})
    return row


def _reruns(rows: list[dict], started: str) -> str:
    """Which rows were measured on another day (an ``--only`` rerun keeps the other rows' results)."""
    by_date: dict[str, list[str]] = {}
    for r in rows:
        by_date.setdefault(r.get("date", "an earlier date"), []).append(r["row"])
    others = [f"{', '.join(names)} on {d}" for d, names in by_date.items() if d != started]
    return f" (rows measured earlier: {'; '.join(others)})" if others else ""


def markdown(rows: list[dict], args, command: str, started: str) -> str:
    direct = next(r for r in rows if r["row"] == "direct SP (gp)")
    lines = ["# Tuning at the target vs hptransfer", "",
             f"Produced by `{command}` on {started}{_reruns(rows, started)} ({machine()}). Recipe `{RECIPE}` "
             f"({' '.join(args.set) or 'as is'}), "
             f"proxy width {args.proxy}, target width {args.target}, {args.trials} trials per row, target loss = mean "
             f"validation loss of the chosen values trained at width {args.target} with seeds {list(EVAL_SEEDS)}. "
             "Method: scripts/bench_tuning.py's docstring.", "",
             "| method | tuned at | target loss (sd over 3 seeds) | vs direct SP (gp) | runs | FLOPs | "
             "FLOPs vs direct SP (gp) | wall s | wall vs direct SP (gp) | pruned | chosen lr |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['tuned_at']} | {r['target_loss']:.4f} ({r['target_loss_sd']:.4f}) | "
            f"{100 * (r['target_loss'] / direct['target_loss'] - 1):+.2f}% | {r['runs']} | {r['flops']:.3g} | "
            f"{r['flops'] / direct['flops']:.3f} | {r['seconds']:.0f} | {r['seconds'] / direct['seconds']:.3f} | "
            f"{r['n_pruned']} | {r['values'].get('lr', float('nan')):.3g} |")
    for r in rows:
        f = r.get("drift_fit")
        if f:
            lines += ["", f"Drift fit ({r['row']}, form `{f.get('form', 'power')}` on widths {f['widths']}): "
                          f"{f['slope']:+.3f} octave per doubling across those widths, 95% CI "
                          f"[{f['ci95'][0]:+.3f}, {f['ci95'][1]:+.3f}], applied: "
                          f"{f['applied']}, correction {f['correction_octaves']:+.2f} octave, {f['runs']} extra runs. "
                          f"{f.get('reason') or ''}".rstrip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke: target 512, 6 trials, 40 steps")
    ap.add_argument("--trials", type=int, default=None, help="trials per row (default: the recipe's 24; quick 6)")
    ap.add_argument("--proxy", type=int, default=64)
    ap.add_argument("--target", type=int, default=None, help="target width (default 2048; quick 512)")
    ap.add_argument("--only", action="append", choices=sorted(ROWS), help="run only this row (repeatable)")
    ap.add_argument("--resume", action="store_true", help="continue the rows' studies instead of starting afresh")
    ap.add_argument("--report", action="store_true", help="only rewrite results.md from results.json (no run)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.trials = args.trials or (6 if args.quick else 24)
    args.target = args.target or (512 if args.quick else 2048)
    args.set = ["train.steps=40", "tune.startup_trials=3", "transfer.fit_seeds=[0, 1]"] if args.quick else []
    out = args.out or (ROOT / ("runs/bench_tuning_quick" if args.quick else "docs/bench/tuning"))
    out.mkdir(parents=True, exist_ok=True)
    store = out / "results.json"
    done = {r["row"]: r for r in json.loads(store.read_text())["rows"]} if store.exists() else {}
    started = datetime.date.today().isoformat()
    if args.report:  # the newest row's date heads the report; older rows are listed by date
        started = max((r["date"] for r in done.values() if "date" in r), default=started)
    for name in [] if args.report else args.only or list(ROWS):
        mode, overrides = ROWS[name]
        print(f"[bench_tuning] {name} ...", flush=True)
        done[name] = {**run_row(name, mode, overrides, args, out / "runs"), "date": started}
        tmp = store.with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": {"proxy": args.proxy, "target": args.target, "trials": args.trials,
                                              "set": args.set}, "rows": [done[n] for n in ROWS if n in done]},
                                  indent=1, default=float))
        tmp.replace(store)
    rows = [done[n] for n in ROWS if n in done]
    if "direct SP (gp)" in done:
        command = "python scripts/bench_tuning.py" + (" --quick" if args.quick else "")
        (out / "results.md").write_text(markdown(rows, args, command, started))
        print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
