"""Reproduce the transfer-verification figures and numbers of docs/results.md.

Runs ``hptransfer check --compare sp,mup`` (through :func:`hptransfer.check.check_recipe`) on

* ``mlp``: recipes/mlp_quickstart.yaml, widths 64..1024 (16x), Adam with a constant LR;
* ``gpt``: recipes/gpt_charlm.yaml, widths 16..128 (8x), the recipe's AdamW + warmup + cosine,
  32-token windows;

with the same steps and batch size at every width, and writes

* ``docs/img/transfer_<case>.png`` -- the TP5-style figure (loss vs log2 LR per width; optimum vs width);
* ``docs/verification_results.md`` -- the tables, the machine, the date and the commands.

The sweeps live in an Optuna journal file (``runs/verify/check.journal``): an interrupted run
resumes, and a rerun over finished sweeps only redoes the analysis. One case at a time::

    python scripts/verify_transfer.py --only mlp      # 510 runs, ~27 min of training on a busy core
    python scripts/verify_transfer.py --only gpt --workers 2   # 312 runs, the slower one
    python scripts/verify_transfer.py                 # both, then the results page
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

#: name -> (recipe, overrides). The overrides are exactly what `hptransfer check --set` takes.
CASES: dict[str, tuple[str, list[str]]] = {
    "mlp": ("recipes/mlp_quickstart.yaml", [
        # Adam with a constant LR and 300 steps of batch 32 makes the LR optimum sharp enough to
        # see SP move (a cosine decay to 10% blurs it); the same settings hold at every width.
        "optimizer.name=adam", "schedule.warmup=0.0", "schedule.decay=constant",
        "check.widths=[64, 128, 256, 512, 1024]", "check.seeds=[0, 1, 2]",
        "check.lr={low: 6.103515625e-05, high: 0.015625, per_octave: 2}",  # 2^-14 .. 2^-6
        "check.steps=300", "check.batch_size=32",
    ]),
    "gpt": ("recipes/gpt_charlm.yaml", [
        # Widths 16..128 (8x) with 32-token windows keep the sweep affordable on CPU (width 256
        # costs ~0.2 s a step); the recipe's AdamW, warmup + cosine schedule, zero readout/query
        # and base width 64 are kept. 3 seeds: with 2, μP's drift sat on the tolerance (-0.15).
        "task.kwargs={block_size: 32}",
        "check.widths=[16, 32, 64, 128]", "check.seeds=[0, 1, 2]",
        "check.lr={low: 0.00048828125, high: 0.125, per_octave: 1.5}",  # 2^-11 .. 2^-3, 2/3-octave steps
        "check.steps=300", "check.batch_size=16",
    ]),
}


def noise_floor(report) -> dict[str, float]:
    """What seed noise alone does to the regret and wider-is-better numbers (true value 0).

    At every width, for every ordered pair of single seeds (a, b): the relative difference of
    their losses at the seed-mean optimum, and the relative regret of using seed a's argmin on
    seed b's curve -- at one width, so no transfer is involved. Returns the 90th percentiles
    over widths, seed pairs and parametrizations (single seeds: an upper bound for seed means).
    """
    import numpy as np

    diffs, regrets = [], []
    for r in report.results:
        for w in range(len(r.widths)):
            curves = r.losses[w].T  # (seeds, grid)
            mean = np.where(np.isinf(curves).any(axis=0), np.inf, curves.mean(axis=0))
            i = int(np.argmin(mean))
            for a in range(len(curves)):
                for b in range(len(curves)):
                    if a == b or not (np.isfinite(curves[a, i]) and np.isfinite(curves[b, i])):
                        continue
                    diffs.append(abs(curves[a, i] - curves[b, i]) / curves[b, i])
                    best_b = float(np.min(curves[b][np.isfinite(curves[b])]))
                    regrets.append((curves[b, int(np.argmin(curves[a]))] - best_b) / best_b)
    return {"pair_diff_p90": float(np.percentile(diffs, 90)), "regret_null_p90": float(np.percentile(regrets, 90)),
            "n": len(diffs)}


def run_case(name: str, storage: str, workers: int) -> dict:
    from hptransfer.check import check_recipe
    from hptransfer.check._text import markdown_table
    from hptransfer.recipe import load_recipe

    path, overrides = CASES[name]
    recipe = load_recipe(ROOT / path, overrides)
    start = time.perf_counter()
    report = check_recipe(recipe, compare=["sp", "mup"], expect={"sp": "fail", "mup": "pass"}, workers=workers,
                          storage=storage, progress=lambda m: print(f"[{name}] {m}", flush=True))
    print(report.summary(), flush=True)
    img = report.plot(ROOT / "docs" / "img" / f"transfer_{name}.png")
    out = ROOT / "runs" / "verify"
    report.to_json(out / f"{name}.json")
    cmd = f"hptransfer check {path} --compare sp,mup " + " ".join(f"--set '{o}'" for o in overrides)
    cfg = report.config
    noise = noise_floor(report)
    frag = "\n".join([
        f"### {name.upper()}: `{path}`, widths {', '.join(map(str, cfg['widths']))}", "",
        f"![transfer check {name}](img/{img.name})", "",
        markdown_table(report), "",
        f"Gate (SP must fail, μP must pass): **{'met' if report.passed else 'NOT met'}**. "
        f"Steps {cfg['steps']}, batch {cfg['batch_size']}, optimizer {cfg['optimizer']}, seeds {cfg['seeds']}, "
        f"{len(cfg['grid']['lr'])} LRs. Training time (sum over runs): {cfg['train_seconds'] / 60:.1f} min; "
        f"this invocation: {(time.perf_counter() - start) / 60:.1f} min.", "",
        f"Seed noise alone (90th percentile over widths and single-seed pairs, same width, so no transfer): "
        f"loss difference at the optimum {100 * noise['pair_diff_p90']:.2f}%, regret of one seed's argmin on "
        f"another seed's curve {100 * noise['regret_null_p90']:.2f}% (n = {noise['n']}).", "",
        "Reasons:", "", *[f"- {r}" for res in report.results for r in res.reasons], "",
        "Command:", "", "```", cmd, "```", "",
    ])
    (out / f"{name}.md").write_text(frag)
    return json.loads(report.to_json())


def _headline(out: Path) -> list[str]:
    """A compact table of every finished case (for docs/results.md)."""
    rows = ["| recipe | widths | SP drift [95% CI] | μP drift [95% CI] | SP / μP regret | verdicts |",
            "|---|---|---|---|---|---|"]
    for name, (path, _) in CASES.items():
        if not (out / f"{name}.json").exists():
            continue
        data = json.loads((out / f"{name}.json").read_text())
        res = {r["parametrization"]: r for r in data["results"] if r["hp"] == "lr"}
        sp, mup = res["sp"], res["mup"]

        def drift(r: dict) -> str:
            d = r["drift"]
            return f"{d['slope']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"
        widths = data["config"]["widths"]
        rows.append(f"| `{path}` | {widths[0]}..{widths[-1]} ({widths[-1] // widths[0]}x) | {drift(sp)} | "
                    f"{drift(mup)} | {100 * sp['regret']['relative']:.1f}% / {100 * mup['regret']['relative']:.1f}% "
                    f"| SP {sp['verdict']}, μP {mup['verdict']} |")
    return rows


def write_results() -> Path:
    out = ROOT / "runs" / "verify"
    frags = [(out / f"{n}.md").read_text() for n in CASES if (out / f"{n}.md").exists()]
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores shared with other jobs, Python " \
              f"{platform.python_version()}, torch {torch.__version__}, 1 torch thread per process"
    text = "\n".join([
        "# Transfer verification: measured results", "",
        f"Produced by `python scripts/verify_transfer.py` on {datetime.date.today().isoformat()} "
        f"({machine}). Method and tolerances: [verification.md](verification.md). Drift is the slope of the "
        "optimal log2 LR against log2 width (octaves per width doubling); regret is the loss at the largest width "
        "with the smallest width's optimal LR, relative to the best loss there.", "",
        *_headline(out), "",
        *frags,
    ])
    path = ROOT / "docs" / "verification_results.md"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(CASES), action="append", help="run only this case (repeatable)")
    ap.add_argument("--storage", default=str(ROOT / "runs" / "verify" / "check.journal"))
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ok = True
    for name in args.only or list(CASES):
        ok &= bool(run_case(name, args.storage, args.workers)["passed"])
    print(f"wrote {write_results()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
