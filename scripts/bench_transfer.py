"""Side-by-side LR transfer: SP, SP + fitted law, hptransfer μP, μP + fitted correction, the mup package.

    python scripts/bench_transfer.py --quick            # CI smoke: tiny widths and steps, ~1-2 min
    python scripts/bench_transfer.py --jobs 2           # full: every model, >= 16x width each, 2 at a time
    python scripts/bench_transfer.py --only mlp --only resglu   # some models (they resume)

For each model an LR sweep in half-octave steps with 3 seeds at every width, under three
parametrizations trained in the same loop on the same batches: ``sp`` (PyTorch defaults, one LR),
``mup`` (hptransfer's rewrite, default options) and ``mup_package`` (the ``mup`` package as its README
sets a model up: ``scripts/_bench.py``). The sweep is hptransfer's adaptive check (bracket and
refine the optimum per width and seed; docs/verification.md), in an Optuna journal file, so an
interrupted run resumes.

Six rows per model (ResGLU adds two gain variants):

* ``sp``, ``mup``, ``mup_package``: the smallest width's optimal LR used at every width. ResGLU also
  has ``mup_gains_freeze`` and ``mup_gains_scaled`` (``parametrization.gains``: its RMSNorm gains
  not trained, or trained at LR x base_width/width).
* ``sp+fit``, ``mup+fit``, ``mup+fit power``: ``transfer: {drift: fit}`` as the tool runs it, from the
  sweep's optima at the three smallest widths (w0, 2 w0, 4 w0: the tool's default fit widths),
  extrapolated from w0's optimum with the curve the tool picks by default (``transfer.fit_form:
  auto``: ``power`` under SP, ``converging`` under μP; hptransfer/targets/_drift.py), and, for
  comparison, μP with the ``power`` curve. The fit is not applied when the 95% interval of the
  drift it measured (per doubling across w0..4 w0) is wider than +/-0.3 octave (the tool's own
  fallback rule). "Drift" of a +fit row is what is left after the correction: the slope over all
  widths of the optimum minus the fitted shift, with a bootstrap interval over seeds (both from the
  same replicates). Its regret is measured by training at the extrapolated LR at the largest width
  (3 seeds), not interpolated.
* ``mup oracle``: the largest width's own estimated optimum (the check's vertex there), trained and
  scored like the transferred LRs: what tuning at the largest width itself scores on this metric, the
  reference a transfer's regret should be read against (the vertex can fall between grid points and
  beat the grid's best, so regrets can be negative).
* Held-out models (``resglu4``, ``mlp_cosine``): μP only, run after the ``converging`` form was chosen
  on the first three models, to test that choice on set-ups it was not picked on.

Per row: optimum per width (log2 LR, 95% interval), drift (octaves per width doubling), regret at the
largest width (loss with the transferred LR over the best loss on the grid there), and whether the
loss at the transferred LR falls with width (wider is better). Every row's regret is measured the
same way: the transferred LR trained at the largest width with each seed (cached in
``measured-<model>.json``), against the lowest seed-mean loss of the sweep there. Writes ``<model>.json``,
``results.md`` and one PNG per model into ``--out`` (default docs/bench/transfer, or
runs/bench_transfer_quick with --quick).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import BenchRunner, machine

from hptransfer.check._check import check_grid
from hptransfer.check._optimum import bootstrap_optima, interp_curve, mean_curve
from hptransfer.recipe import load_recipe
from hptransfer.targets._drift import drift_shift, fit_coefficient

ROOT = Path(__file__).resolve().parents[1]
PARS = ("sp", "mup", "mup_package")
MAX_FIT_HALFWIDTH = 0.3  # octaves: transfer.fit_max_halfwidth's default

#: name -> recipe, overrides, widths, LR grid exponents (log2, half-octave), steps, batch.
CASES: dict[str, dict] = {
    "mlp": {"recipe": "recipes/mlp_quickstart.yaml",
            "set": ["optimizer.name=adam", "schedule.warmup=0.0", "schedule.decay=constant"],
            "widths": [64, 128, 256, 512, 1024, 2048], "lr": (-16.0, -5.0), "steps": 300, "batch": 32},
    "resglu": {"recipe": "recipes/mlp_quickstart.yaml",
               "set": ["model.name=resglu", "model.kwargs={blocks: 2}", "optimizer.name=adamw",
                       "optimizer.weight_decay=0.0", "schedule.warmup=0.0", "schedule.decay=constant",
                       "parametrization.base_width=32"],
               "widths": [32, 64, 128, 256, 512], "lr": (-15.0, -4.0), "steps": 300, "batch": 32,
               # the two fixes for trainable norm gains (training/_gains.py), measured beside plain μP
               "variants": {"mup_gains_freeze": ["parametrization.gains=freeze"],
                            "mup_gains_scaled": ["parametrization.gains=scaled"]}},
    "gpt": {"recipe": "recipes/gpt_charlm.yaml",
            "set": ["task.kwargs={block_size: 32}", "parametrization.base_width=16"],
            "widths": [16, 32, 64, 128, 256], "lr": (-13.0, -2.0), "steps": 200, "batch": 8},
    # the GPT from width 32 (width 16's 4-dim heads are an outlier) to 512, μP only (CPU budget);
    # it shares the gpt case's studies, so only the new points train
    "gpt_wide": {"recipe": "recipes/gpt_charlm.yaml",
                 "set": ["task.kwargs={block_size: 32}", "parametrization.base_width=16"], "studies": "gpt",
                 "widths": [32, 64, 128, 256, 512], "lr": (-13.0, -2.0), "steps": 200, "batch": 8, "pars": ["mup"]},
    # the gpt case with a fixed head dim of 16 (1 head at width 16, 16 at 256) instead of 4 heads
    # whose dim shrinks to 4 at width 16: is the gpt case's shortfall its 4-dim heads? (added 2026-12-06)
    "gpt_hd16": {"recipe": "recipes/gpt_charlm.yaml",
                 "set": ["task.kwargs={block_size: 32}", "parametrization.base_width=16",
                         "model.kwargs={n_layer: 2, head_dim: 16}"],
                 "widths": [16, 32, 64, 128, 256], "lr": (-13.0, -2.0), "steps": 200, "batch": 8},
    # held out (module docstring): μP only, set-ups the fit form was not chosen on
    "resglu4": {"recipe": "recipes/mlp_quickstart.yaml",
                "set": ["model.name=resglu", "model.kwargs={blocks: 4}", "optimizer.name=adamw",
                        "parametrization.base_width=32"],
                "widths": [32, 64, 128, 256, 512], "lr": (-15.0, -4.0), "steps": 300, "batch": 32, "pars": ["mup"]},
    "mlp_cosine": {"recipe": "recipes/mlp_quickstart.yaml", "set": [],
                   "widths": [64, 128, 256, 512, 1024], "lr": (-16.0, -5.0), "steps": 300, "batch": 32,
                   "pars": ["mup"]},
}
QUICK: dict[str, dict] = {
    "mlp": {**CASES["mlp"], "widths": [32, 64, 128, 256], "steps": 60, "lr": (-12.0, -4.0)},
    "resglu": {**CASES["resglu"], "widths": [32, 64, 128, 256], "steps": 60, "lr": (-12.0, -4.0)},
}


def fit_row(res, measure: _Measured, form: str, label: str, n_fit: int = 3) -> dict:
    """A ``+fit`` row of one parametrization's sweep (module docstring).

    The curve ``form`` (``power`` or ``converging``, hptransfer.targets' ``drift_shift``) is fitted
    to the optima at the ``n_fit`` smallest widths (``transfer: {drift: fit}`` with its default fit
    widths) and extrapolated from the smallest width's optimum, with the tool's fallback rule."""
    widths = np.asarray(res.widths, dtype=float)
    lw = np.log2(widths)
    w0, w_max = float(widths[0]), int(widths[-1])
    point = np.array([o.x for o in res.optima])
    boot = bootstrap_optima(res.x, res.losses)  # the check's replicates
    coef = float(fit_coefficient(form, widths[:n_fit], point[:n_fit]))
    coefs = fit_coefficient(form, widths[:n_fit], boot[:, :n_fit])
    # drift per doubling across the fit widths: the quantity the tool's fallback judges
    w_fit = float(widths[n_fit - 1])
    per_doubling = drift_shift(form, coefs, w0, w_fit) / math.log2(w_fit / w0)
    fit_lo, fit_hi = _ci(per_doubling[np.isfinite(per_doubling)])
    eff = drift_shift(form, coef, w0, w_fit) / math.log2(w_fit / w0)
    applied = math.isfinite(eff) and (fit_hi - fit_lo) / 2 <= MAX_FIT_HALFWIDTH
    shift = np.array([drift_shift(form, coef, w0, w) for w in widths]) if applied else np.zeros(len(widths))
    pred = point[0] + shift
    # drift left after the correction: slope of (optimum - fitted shift) against log2 width
    resid_boot = boot - np.array([[drift_shift(form, c, w0, w) for w in widths] for c in coefs])
    resid = _slopes(lw, (point - shift)[None, :])[0]
    r = _slopes(lw, resid_boot)
    r_lo, r_hi = _ci(r[np.isfinite(r)])
    curves = [mean_curve(res.losses[w]) for w in range(len(widths))]
    at_pred = [interp_curve(res.x, c, float(p)) for c, p in zip(curves, pred)]
    # Regret at the largest width: trained at the extrapolated LR (3 seeds), not interpolated.
    seeds = list(range(res.losses.shape[2]))
    lr = float(2.0 ** pred[-1])
    measured = measure(res.parametrization, w_max, lr, seeds)
    last = curves[-1]
    best = float(np.min(last[np.isfinite(last)]))
    loss_pred = float(np.mean(measured))
    return {"parametrization": label, "form": form, "fit_coef": coef, "fit_slope": eff, "fit_ci95": [fit_lo, fit_hi],
            "fit_widths": [int(w) for w in widths[:n_fit]], "anchor_width": int(w0), "applied": bool(applied),
            # not applied: the plain optimum's drift, with the check's own interval
            "drift": ({"slope": float(resid), "ci95": [r_lo, r_hi], "what": "residual after the fitted correction"}
                      if applied else {"slope": res.drift.slope, "ci95": [res.drift.lo, res.drift.hi],
                                       "what": "no correction (fit too noisy)"}),
            "lr_at_largest": lr, "loss_at_largest": loss_pred, "losses_at_largest": measured,
            "best_at_largest": best, "regret_rel": (loss_pred - best) / best,
            "predicted_log2_lr": [float(p) for p in pred], "loss_at_prediction": [float(v) for v in at_pred],
            "wider_is_better": bool(all(b <= a for a, b in itertools.pairwise(at_pred) if math.isfinite(a + b)))}


def _slopes(lw: np.ndarray, opt: np.ndarray) -> np.ndarray:
    """OLS slope of each row of ``opt`` against ``lw`` (rows with a NaN give NaN)."""
    lc = lw - lw.mean()
    return ((opt - opt.mean(axis=1, keepdims=True)) * lc).sum(axis=1) / (lc ** 2).sum()


def _ci(values: np.ndarray) -> tuple[float, float]:
    return tuple(float(v) for v in np.percentile(values, [2.5, 97.5])) if len(values) else (math.nan, math.nan)


class _Measured:
    """Runs at the largest width at a transferred LR, cached in a JSON file (a rerun trains none again)."""

    def __init__(self, runner: BenchRunner, path: Path) -> None:
        self.runner, self.path = runner, path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def __call__(self, par: str, width: int, lr: float, seeds: list[int]) -> list[float]:
        out = []
        for s in seeds:
            key = f"{par}|{width}|{s}|{lr:.6e}"
            if key not in self.data:
                value = float(self.runner(par, width, s, {"lr": float(f"{lr:.6e}")}).val_loss)
                # merge with what parallel invocations (--only) wrote meanwhile
                self.data = {**(json.loads(self.path.read_text()) if self.path.exists() else {}), **self.data}
                self.data[key] = value
                tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(self.data, indent=0))
                tmp.replace(self.path)
            out.append(self.data[key])
        return out


def oracle_row(res, measure: _Measured) -> dict:
    """The reference of the regret metric: the largest width's own estimated optimum, trained and
    scored like the transferred LRs (what tuning at that width itself scores here)."""
    w_max = int(res.widths[-1])
    seeds = list(range(res.losses.shape[2]))
    last = mean_curve(res.losses[-1])
    best = float(np.min(last[np.isfinite(last)]))
    lr = float(2.0 ** res.optima[-1].x)
    measured = measure(res.parametrization, w_max, lr, seeds)
    loss = float(np.mean(measured))
    return {"parametrization": f"{res.parametrization} oracle", "lr_at_largest": lr, "losses_at_largest": measured,
            "loss_at_largest": loss, "best_at_largest": best, "regret_rel": (loss - best) / best,
            "drift": {"slope": math.nan, "ci95": [math.nan, math.nan], "what": "no transfer: the width's own optimum"},
            "wider_is_better": None}


def plain_row(res, measure: _Measured) -> dict:
    """The row of one parametrization with the smallest width's optimum used everywhere.

    Its regret is measured like the +fit rows': trained at the largest width at that LR with every
    seed (the check's own regret interpolates the sparse curve; both are kept)."""
    d = res.drift
    at = [float(v) for v in res.at_proxy_opt]
    seeds = list(range(res.losses.shape[2]))
    last = mean_curve(res.losses[-1])
    best = float(np.min(last[np.isfinite(last)]))
    lr0 = float(2.0 ** res.optima[0].x)
    measured = measure(res.parametrization, int(res.widths[-1]), lr0, seeds)
    loss = float(np.mean(measured))
    return {"parametrization": res.parametrization, "lr_at_largest": lr0, "losses_at_largest": measured,
            "loss_at_largest": loss, "best_at_largest": best, "regret_rel": (loss - best) / best,
            "regret_rel_interpolated": res.regret_rel,
            "optima": [{"width": int(o.width), "log2_lr": o.x, "ci95": [o.lo, o.hi], "edge": o.edge}
                       for o in res.optima],
            "drift": {"slope": d.slope, "ci95": [d.lo, d.hi], "what": "optimum vs width"},
            "loss_at_proxy_opt": at,
            "wider_is_better": bool(all(b <= a for a, b in itertools.pairwise(at) if math.isfinite(a + b))),
            "verdict": res.verdict, "reasons": list(res.reasons)}


def run_case(name: str, case: dict, out: Path, seeds: list[int], progress: bool) -> dict:
    recipe = load_recipe(ROOT / case["recipe"], [*case["set"], "name=bench_" + case.get("studies", name)])
    variants = {k: load_recipe(ROOT / case["recipe"], [*case["set"], *v, "name=bench_" + name])
                for k, v in case.get("variants", {}).items()}
    runner = BenchRunner(recipe, steps=case["steps"], batch_size=case["batch"], variants=variants)
    pars = [*case.get("pars", PARS), *variants]
    lo, hi = case["lr"]
    grid = [2.0 ** (lo + k / 2) for k in range(round((hi - lo) * 2) + 1)]
    t0 = time.perf_counter()
    say = (lambda m: print(f"[{name}] {m}", flush=True)) if progress else None
    report = check_grid(runner, widths=case["widths"], grid={"lr": grid}, seeds=seeds, parametrizations=pars,
                        expect={p: "any" for p in pars}, storage=str(out / "bench.journal"),
                        study_prefix=f"bench-{case.get('studies', name)}", strategy="adaptive", progress=say)
    # one cache per runner (cases sharing studies share it): a key names no model
    measure = _Measured(runner, out / f"measured-{case.get('studies', name)}.json")
    rows = []
    for res in report.results:
        rows.append(plain_row(res, measure))
        if res.parametrization == "sp":
            rows.append(fit_row(res, measure, "power", "sp+fit"))
        if res.parametrization == "mup":
            # the tool's default form under μP, then the power law for comparison
            rows.append(fit_row(res, measure, "converging", "mup+fit"))
            rows.append(fit_row(res, measure, "power", "mup+fit power"))
            rows.append(oracle_row(res, measure))
    plot(name, report, rows, out / f"{name}.png")
    return {"case": name, "recipe": case["recipe"], "set": case["set"], "widths": case["widths"],
            "steps": case["steps"], "batch_size": case["batch"], "seeds": seeds, "lr_grid_log2": [lo, hi, 0.5],
            "runs_trained": report.config["runs_trained"], "grid_runs": report.config["grid_runs"],
            "train_seconds": report.config["train_seconds"], "seconds": round(time.perf_counter() - t0, 1),
            "rows": rows}


def plot(name: str, report, rows: list[dict], path: Path) -> None:
    """Loss vs log2 LR per width for each parametrization, and the optimum (or prediction) vs width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.results)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.75 * (n + 1), 4.2))
    cmap = plt.get_cmap("viridis")
    for ax, res in zip(axes, report.results):
        for i, w in enumerate(res.widths):
            c = mean_curve(res.losses[i])
            keep = np.isfinite(c)
            ax.plot(res.x[keep], c[keep], "o-", ms=3, color=cmap(i / max(1, len(res.widths) - 1)), label=f"{int(w)}")
        ax.set_title(f"{name}: {res.parametrization}")
        ax.set_xlabel("log2 LR")
        ax.set_ylabel("validation loss (nats)")
        finite = res.losses[np.isfinite(res.losses)]
        if finite.size:
            ax.set_ylim(float(finite.min()) - 0.02, float(np.percentile(finite, 80)) + 0.05)
        ax.legend(title="width", fontsize=7)
    ax = axes[n]
    for res, color in zip(report.results, ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange")):
        xs = np.log2(res.widths)
        ys = [o.x for o in res.optima]
        err = np.array([[o.x - o.lo, o.hi - o.x] for o in res.optima]).T
        ax.errorbar(xs, ys, yerr=np.nan_to_num(err), fmt="o-", color=color, capsize=3,
                    label=f"{res.parametrization} optimum")
        for fit, style in ((f"{res.parametrization}+fit", "--"), (f"{res.parametrization}+fit power", ":")):
            row = next((r for r in rows if r["parametrization"] == fit), None)
            if row and row["applied"]:
                ax.plot(xs, row["predicted_log2_lr"], style, color=color, label=f"{fit} prediction")
    ax.set_xlabel("log2 width")
    ax.set_ylabel("optimal log2 LR")
    ax.set_title(f"{name}: optimum vs width")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt_ci(ci) -> str:
    lo, hi = ci
    return f"[{lo:+.2f}, {hi:+.2f}]" if lo is not None and math.isfinite(lo) and math.isfinite(hi) else "[n/a]"


def targets(result: dict) -> str:
    """Issue 11's targets for one model, met or missed, for each μP row (plain and corrected)."""
    rows = {r["parametrization"]: r for r in result["rows"]}
    pkg = rows.get("mup_package")
    w = result["widths"]

    def mark(ok: bool) -> str:
        return "met" if ok else "missed"
    head = f"Targets over {w[-1] // w[0]}x (|drift| <= 0.10 octave/doubling; regret <= 0.3%"
    head += (f"; no worse than the mup package's drift {pkg['drift']['slope']:+.2f} and regret "
             f"{100 * pkg['regret_rel']:.2f}%):" if pkg else "; μP only, no mup package row):")
    out = [head, ""]
    for name in ("mup", "mup+fit", "mup+fit power"):
        r = rows.get(name)
        if r is None:
            continue
        d = r["drift"]["slope"]
        note = "" if r.get("applied", True) else " (fit too noisy: not applied, so plain μP)"
        line = (f"- {name}{note}: drift {mark(abs(d) <= 0.10)} ({d:+.2f}); regret {mark(r['regret_rel'] <= 0.003)} "
                f"({100 * r['regret_rel']:.2f}%)")
        if pkg:
            vs_pkg = abs(d) <= abs(pkg["drift"]["slope"]) and r["regret_rel"] <= pkg["regret_rel"]
            line += f"; vs the mup package {mark(vs_pkg)}"
        out.append(line + ".")
    oracle = rows.get("mup oracle")
    if oracle:
        out += ["", f"Reference: width {w[-1]}'s own estimated optimum, trained and scored the same way (`mup "
                    f"oracle`), has a regret of {100 * oracle['regret_rel']:.2f}%."]
    return "\n".join(out)


def markdown(results: list[dict], command: str, started: str, last: str = "") -> str:
    lines = ["# LR transfer side by side", "",
             f"Produced by `{command}` on {started} ({machine()}). {last} "
             "Method: scripts/bench_transfer.py's docstring. "
             "Drift: octaves of optimal LR per width doubling (for +fit rows: what is left after the fitted "
             "correction). Regret: loss at the largest width with the transferred LR, relative to the best "
             "loss on the grid there. Seed noise at one width is of the order of the smallest regrets "
             "(docs/verification_results.md measured 1.2% for single seeds on the MLP).", ""]
    for r in results:
        w = r["widths"]
        how = f"with {' '.join(r['set'])}" if r["set"] else "as shipped"
        lines += [f"## {r['case']}: `{r['recipe']}` {how}", "",
                  f"Widths {', '.join(map(str, w))} ({w[-1] // w[0]}x), {r['steps']} steps of batch "
                  f"{r['batch_size']}, seeds {r['seeds']}, LR grid 2^{r['lr_grid_log2'][0]:g}..2^"
                  f"{r['lr_grid_log2'][1]:g} in half octaves; {r['runs_trained']} runs trained (the full grid "
                  f"would be {r['grid_runs']}), {r['train_seconds'] / 60:.1f} min of training.", "",
                  f"![{r['case']}]({r['case']}.png)", "",
                  "| method | optimum log2 LR per width | drift [95% CI] | regret at largest width | wider is better |",
                  "|---|---|---|---|---|"]
        for row in r["rows"]:
            if row["wider_is_better"] is None:  # the oracle row: no transfer, no drift
                lines.append(f"| {row['parametrization']} | own optimum at width {w[-1]}: "
                             f"{math.log2(row['lr_at_largest']):.2f} | — | {100 * row['regret_rel']:.2f}% | — |")
                continue
            if "optima" in row:
                opt = " ".join(f"{o['log2_lr']:.2f}" for o in row["optima"])
            else:
                opt = (f"{row.get('form', 'power')} fit on {row['fit_widths']}: {row['fit_slope']:+.2f} "
                       f"{_fmt_ci(row['fit_ci95'])} per doubling"
                       + ("" if row["applied"] else " (too wide: not applied)"))
            d = row["drift"]
            lines.append(f"| {row['parametrization']} | {opt} | {d['slope']:+.2f} {_fmt_ci(d['ci95'])} | "
                         f"{100 * row['regret_rel']:.2f}% | {'yes' if row['wider_is_better'] else 'no'} |")
        lines += ["", targets(r), ""]
    return "\n".join(lines)


def _flops(case: dict) -> float:
    """A case's training FLOPs per seed and LR, summed over widths and parametrizations (to order jobs)."""
    from hptransfer.training._build import model_cost

    recipe = load_recipe(ROOT / case["recipe"], case["set"])
    per_width = sum(model_cost(recipe.at(w, steps=case["steps"], batch_size=case["batch"]))["flops"]
                    for w in case["widths"])
    return per_width * (len(case.get("pars", PARS)) + len(case.get("variants", {})))


def _run_group(names: list[str], cases: dict[str, dict], out: Path, seeds: list[int], progress: bool) -> None:
    """Run ``names`` in order, each model's JSON written atomically (parallel jobs and crashes keep the rest)."""
    torch.set_num_threads(1)
    for name in names:
        result = run_case(name, cases[name], out, seeds, progress)
        tmp = out / f"{name}.json.tmp"
        tmp.write_text(json.dumps(result, indent=1, default=float))
        tmp.replace(out / f"{name}.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke: small widths, few steps, 2 seeds")
    ap.add_argument("--only", action="append", choices=sorted(CASES), help="run only this model (repeatable)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seeds", type=int, default=None, help="seeds per point (default 3, --quick 2)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--jobs", type=int, default=1,
                    help="models trained at once, one process each (cases sharing studies run in one; default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cases = QUICK if args.quick else CASES
    out = args.out or (ROOT / ("runs/bench_transfer_quick" if args.quick else "docs/bench/transfer"))
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds or (2 if args.quick else 3)))
    names = [n for n in (args.only or list(cases)) if n in cases]
    started = datetime.date.today().isoformat()
    t0 = time.perf_counter()
    # cases sharing studies run one after the other in one process (the later one reuses the runs)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(cases[name].get("studies", name), []).append(name)
    if args.jobs > 1 and len(groups) > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        # the costliest group first, so that the last one to start is a short one
        order = sorted(groups.values(), key=lambda g: -sum(_flops(cases[n]) for n in g))
        with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            for f in [pool.submit(_run_group, g, cases, out, seeds, not args.quiet) for g in order]:
                f.result()
    else:
        for g in groups.values():
            _run_group(g, cases, out, seeds, not args.quiet)
    wall = time.perf_counter() - t0
    done = [json.loads((out / f"{n}.json").read_text()) for n in cases if (out / f"{n}.json").exists()]
    command = "python scripts/bench_transfer.py" + (" --quick" if args.quick else "")
    last = f"Last invocation: {', '.join(names)} with --jobs {args.jobs}, {wall / 60:.1f} min wall."
    (out / "results.md").write_text(markdown(done, command, started, last))
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
