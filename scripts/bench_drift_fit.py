"""The drift fit as the tool runs it (``transfer: {drift: fit}``), on the benchmark models of ``bench_transfer.py``.

    python scripts/bench_drift_fit.py                      # mlp, resglu, mlp_cosine, resglu4
    python scripts/bench_drift_fit.py --only resglu --fit-seeds 0 1 2 3
    python scripts/bench_drift_fit.py --only resglu --proxy 64 --fit-widths 128 256
    python scripts/bench_drift_fit.py --report             # rewrite results.md from results.json

``bench_transfer.py``'s ``+fit`` rows emulate the fit from the optima of its full multi-width sweep,
which no grid edge limits. This script runs the tool's own path instead --
:func:`hptransfer.targets._drift.fit_drift`, with its local sweeps, its fallback rules and its runs
-- from the LR ``bench_transfer.py`` measured as optimal at the smallest width (the "tuned" LR: the
same start for every version of the fit, free of tuning noise), with the default fit widths (2x and
4x the smallest), to the case's largest width. ``--proxy W`` starts from the optimum at another of
the benchmark's widths (its "no fit" regret is then measured here, by training that LR at the target
with the same seeds), and ``--fit-widths`` sets ``transfer.fit_widths``. The LR the fit writes is
then trained at the largest width with seeds 0, 1, 2 (the benchmark's training, steps and batch),
and scored against the lowest seed-mean loss of the benchmark's sweep there (regret, as in
``bench_transfer.py``). The tool's version under test is whichever ``hptransfer`` Python imports
(``PYTHONPATH`` to an older checkout measures that one: ``--out`` keeps the two apart). Needs
``docs/bench/transfer/<case>.json``. Writes ``results.json`` and ``results.md`` into ``--out``
(default docs/bench/drift_fit).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import machine
from bench_transfer import CASES

import hptransfer
from hptransfer.check._runner import RecipeRunner
from hptransfer.recipe import load_recipe
from hptransfer.targets._drift import fit_drift

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASES = ["mlp", "resglu", "mlp_cosine", "resglu4"]
EVAL_SEEDS = (0, 1, 2)


def run_case(name: str, fit_seeds: list[int], out: Path, proxy: int | None = None,
             fit_widths: list[int] | None = None) -> dict:
    case = CASES[name]
    bench = json.loads((ROOT / "docs/bench/transfer" / f"{name}.json").read_text())
    mup = next(r for r in bench["rows"] if r["parametrization"] == "mup")
    widths = case["widths"]
    proxy, target = proxy or widths[0], widths[-1]
    if proxy not in widths:
        raise SystemExit(f"--proxy {proxy}: bench_transfer measured {name} at widths {widths} only")
    tuned = 2.0 ** mup["optima"][widths.index(proxy)]["log2_lr"]
    folder = out / f"{name}_p{proxy}{'_w' + '-'.join(map(str, fit_widths)) if fit_widths else ''}"
    folder.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe(ROOT / case["recipe"], [
        *case["set"], f"train.steps={case['steps']}", f"train.batch_size={case['batch']}",
        f"widths.proxy={proxy}", f"widths.target={target}", "transfer.drift=fit",
        *([f"transfer.fit_widths={list(fit_widths)}"] if fit_widths else []),
        f"transfer.fit_seeds={list(fit_seeds)}", f"out={folder}", f"name=driftfit_{folder.name}"])
    t0 = time.perf_counter()
    fit = fit_drift(recipe, {"lr": tuned}, target, storage=str(folder / "fit.journal"))
    fit_s = time.perf_counter() - t0
    runner = RecipeRunner(recipe, steps=case["steps"], batch_size=case["batch"])
    lr = float(f"{fit.lr_target:.6e}")
    losses = [float(runner("mup", target, s, {"lr": lr}).val_loss) for s in EVAL_SEEDS]
    best = float(mup["best_at_largest"])
    if proxy == widths[0]:
        no_fit = mup["regret_rel"]  # bench_transfer's own: its smallest width's optimum, trained at the largest
    else:  # the tuned LR as is, trained here at the target like the fit's LR
        no_fit = (float(np.mean([float(runner("mup", target, s, {"lr": float(f"{tuned:.6e}")}).val_loss)
                                 for s in EVAL_SEEDS])) - best) / best
    d = fit.to_dict()
    return {"case": name, "proxy": proxy, "target": target, "fit_widths": d["widths"], "fit_seeds": list(fit_seeds),
            "tuned_log2_lr": math.log2(tuned), "applied": d["applied"], "reason": d["reason"], "form": d["form"],
            "slope": d["slope"], "ci95": d["ci95"], "correction_octaves": d["correction_octaves"],
            "optima_log2_lr": d["optima_log2_lr"], "target_log2_lr": math.log2(fit.lr_target),
            "best_log2_lr_at_target": mup["optima"][-1]["log2_lr"], "runs": d["runs"],
            "runs_vs_fixed_grid": d.get("runs_vs_fixed_grid"), "fit_seconds": fit_s,
            "losses_at_target": losses, "loss_at_target": float(np.mean(losses)), "best_at_target": best,
            "regret_rel": (float(np.mean(losses)) - best) / best,
            "regret_rel_without_fit": no_fit, "regret_rel_emulated_fit": _emulated(bench)}


def _key(case: str, seeds: list[int], proxy: int, widths: list[int]) -> tuple:
    return case, tuple(seeds), proxy, tuple(widths)


def _emulated(bench: dict) -> float | None:
    row = next((r for r in bench["rows"] if r["parametrization"] == "mup+fit"), None)
    return None if row is None else row["regret_rel"]


def markdown(rows: list[dict], started: str, version: str) -> str:
    commands = " and ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", "python scripts/bench_drift_fit.py")
                                                           for r in rows))
    lines = ["# The drift fit as the tool runs it", "",
             f"Produced by {commands} on {started} ({machine()}); hptransfer {version}. "
             "Method: scripts/bench_drift_fit.py's docstring. Octaves are log2 LR; regret is the target's mean "
             "loss (seeds 0-2) over the best seed-mean loss of bench_transfer's sweep at that width.", "",
             "| case | widths | fit seeds | applied | drift/doubling [95%] | correction | optimum at target "
             "(bench) | LR written | runs (vs a fixed grid) | regret: no fit | regret: tool's fit | "
             "regret: bench's emulated fit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["ci95"]
        ci = f"{r['slope']:+.3f} [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else "n/a"
        added = r.get("runs_vs_fixed_grid")
        emu = r["regret_rel_emulated_fit"]
        lines.append(
            f"| {r['case']} | {r['proxy']} -> {r['target']} (fit {r['fit_widths']}) | {len(r['fit_seeds'])} | "
            f"{'yes' if r['applied'] else 'no'} | {ci} | {r['correction_octaves']:+.2f} | "
            f"{r['best_log2_lr_at_target']:.2f} | {r['target_log2_lr']:.2f} | {r['runs']}"
            f"{f' ({added:+d})' if added is not None else ''} | {100 * r['regret_rel_without_fit']:.2f}% | "
            f"{100 * r['regret_rel']:.2f}% | {'n/a' if emu is None else f'{100 * emu:.2f}%'} |")
    reasons = [f"- {r['case']}: {r['reason']}" for r in rows if r["reason"]]
    if reasons:
        lines += ["", "Not applied, or forced:", "", *reasons]
    return "\n".join(lines) + "\n"


def _version() -> str:
    src = Path(hptransfer.__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "hptransfer"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"at {src}"
    return f"{sha}{' + uncommitted changes' if dirty else ''} ({src})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=sorted(CASES), help="run only this case (repeatable)")
    ap.add_argument("--fit-seeds", type=int, nargs="+", default=[0, 1], help="transfer.fit_seeds (default 0 1)")
    ap.add_argument("--proxy", type=int, default=None, help="tuned width (default the case's smallest)")
    ap.add_argument("--fit-widths", type=int, nargs="+", default=None,
                    help="transfer.fit_widths (default the tool's: 2x and 4x the proxy)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/bench/drift_fit")
    ap.add_argument("--report", action="store_true", help="only rewrite results.md from results.json (no run)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "results.json"
    done = {_key(r["case"], r["fit_seeds"], r["proxy"], r["fit_widths"]): r
            for r in json.loads(store.read_text())["rows"]} if store.exists() else {}
    started = datetime.date.today().isoformat()
    command = ("python scripts/bench_drift_fit.py" + "".join(f" --only {n}" for n in args.only or [])
               + ("" if args.fit_seeds == [0, 1] else " --fit-seeds " + " ".join(map(str, args.fit_seeds)))
               + (f" --proxy {args.proxy}" if args.proxy else "")
               + (" --fit-widths " + " ".join(map(str, args.fit_widths)) if args.fit_widths else ""))
    for name in [] if args.report else args.only or DEFAULT_CASES:
        print(f"[bench_drift_fit] {name}, fit seeds {args.fit_seeds} ...", flush=True)
        row = {**run_case(name, args.fit_seeds, args.out / "runs", args.proxy, args.fit_widths),
               "command": command, "date": started, "version": _version()}
        done[_key(name, args.fit_seeds, row["proxy"], row["fit_widths"])] = row
        tmp = store.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rows": list(done.values())}, indent=1, default=float))
        tmp.replace(store)
    rows = list(done.values())
    if args.report and rows:
        started = max(r.get("date", started) for r in rows)
    versions = " / ".join(dict.fromkeys(r.get("version", _version()) for r in rows))
    (args.out / "results.md").write_text(markdown(rows, started, versions))
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
