"""Full-grid vs adaptive transfer check on one recipe: verdicts, drift intervals, regret, run counts.

    python scripts/bench_check_strategies.py recipes/mlp_quickstart.yaml --compare sp,mup
    python scripts/bench_check_strategies.py recipes/gpt_charlm.yaml --widths 32,64,128

Runs ``hptransfer check`` twice (``--strategy grid`` and ``--strategy adaptive``) in fresh run
folders under ``--out`` (so neither reuses the other's runs), then writes a Markdown table and a
JSON summary next to them. ``--reports GRID.json ADAPTIVE.json`` skips the runs and only compares
two reports that ``hptransfer check --json`` wrote; ``--grid-report GRID.json`` reuses a grid report
and runs only the adaptive side. Costs are compared in training steps actually spent
(``steps_trained``: diverged runs stop early, the adaptive check stops hopeless runs early), not
only in runs; a report written before ``steps_trained`` existed is costed at runs x steps (an upper
bound, marked ``<=``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _run(recipe: str, strategy: str, out: Path, extra: list[str]) -> tuple[dict, float]:
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.json"
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "hptransfer", "check", recipe, "--strategy", strategy, "--set", f"out={out}",
           "--json", str(report), "--quiet", *extra]
    code = subprocess.run(cmd, check=False).returncode
    if code not in (0, 1):
        sys.exit(f"hptransfer check exited {code}: {' '.join(cmd)}")
    return json.loads(report.read_text()), time.perf_counter() - start


def _half(r: dict) -> float:
    lo, hi = r["drift"]["ci95"]
    return (hi - lo) / 2 if lo is not None and hi is not None else float("nan")


def _runs(cfg: dict) -> int:
    """Runs started: finished plus stopped early."""
    return int(cfg.get("runs_trained", cfg.get("grid_runs", 0))) + int(cfg.get("runs_pruned", 0))


def _steps(cfg: dict) -> tuple[int, bool]:
    """``(training steps spent, exact)``; reports without ``steps_trained`` give runs x steps."""
    if "steps_trained" in cfg:
        return int(cfg["steps_trained"]), True
    return _runs(cfg) * int(cfg.get("steps", 0)), False


def table(grid: dict, adaptive: dict, seconds: tuple[float | None, float | None]) -> str:
    """Markdown: one row per parametrization and strategy, then the run and step ratios."""
    rows = ["| strategy | parametrization | verdict | drift [95% CI] | CI half-width | regret | runs (stopped) "
            "| steps |", "|---|---|---|---|---|---|---|---|"]
    for name, rep in (("grid", grid), ("adaptive", adaptive)):
        steps, exact = _steps(rep["config"])
        for r in rep["results"]:
            lo, hi = r["drift"]["ci95"]
            rows.append(f"| {name} | {r['parametrization']} | {r['verdict']} | {r['drift']['slope']:+.3f} "
                        f"[{lo:+.3f}, {hi:+.3f}] | {_half(r):.3f} | {100 * r['regret']['relative']:.2f}% | "
                        f"{_runs(rep['config'])} ({rep['config'].get('runs_pruned', 0)}) | "
                        f"{'' if exact else '<= '}{steps} |")
    g_runs, a_runs = _runs(grid["config"]), _runs(adaptive["config"])
    (g_steps, g_exact), (a_steps, _) = _steps(grid["config"]), _steps(adaptive["config"])
    same = all(a["verdict"] == b["verdict"] for a, b in zip(grid["results"], adaptive["results"]))
    ratios = [(_half(b) / _half(a)) for a, b in zip(grid["results"], adaptive["results"]) if _half(a) > 0]
    lines = ["\n".join(rows), "",
             f"Adaptive / grid runs started: {a_runs} / {g_runs} = {a_runs / g_runs:.2f}. Adaptive / grid training "
             f"steps: {a_steps} / {'' if g_exact else '<= '}{g_steps} = {'>= ' if not g_exact else ''}"
             f"{a_steps / g_steps:.2f}. Same verdicts: {'yes' if same else 'NO'}. Interval half-width ratio "
             f"(adaptive / grid): {', '.join(f'{x:.2f}' for x in ratios)}."]
    lines.extend(f"Wall time, {name}: {s:.0f} s." for name, s in zip(("grid", "adaptive"), seconds) if s is not None)
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe")
    p.add_argument("--compare", default=None, help="parametrizations, e.g. sp,mup")
    p.add_argument("--widths", default=None, help="check widths, e.g. 32,64,128")
    p.add_argument("--out", default="runs/bench_check_strategies", help="folder for both runs and the table")
    p.add_argument("--reports", nargs=2, metavar=("GRID_JSON", "ADAPTIVE_JSON"), default=None)
    p.add_argument("--grid-report", default=None, metavar="GRID_JSON",
                   help="reuse this grid report; run only the adaptive check")
    p.add_argument("--workers", default=None, help="passed to hptransfer check (e.g. 1 on a shared machine)")
    args = p.parse_args()
    out = Path(args.out)
    extra = (["--compare", args.compare] if args.compare else []) + (["--widths", args.widths] if args.widths else [])
    extra += ["--workers", args.workers] if args.workers else []
    if args.reports:
        grid, adaptive = (json.loads(Path(f).read_text()) for f in args.reports)
        secs: tuple[float | None, float | None] = (None, None)
    elif args.grid_report:
        grid = json.loads(Path(args.grid_report).read_text())
        adaptive, t_adaptive = _run(args.recipe, "adaptive", out / "adaptive", extra)
        secs = (None, t_adaptive)
    else:
        grid, t_grid = _run(args.recipe, "grid", out / "grid", extra)
        adaptive, t_adaptive = _run(args.recipe, "adaptive", out / "adaptive", extra)
        secs = (t_grid, t_adaptive)
    text = table(grid, adaptive, secs)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.recipe).stem
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps({"grid": grid, "adaptive": adaptive}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
