"""Run-folder reporting: the three plots and ``summary.md`` (the file a person reads first).

Plots need matplotlib (``pip install hptransfer[plot]``); without it the summary says so and
everything else is still written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna

from .._io import save_figure, write_text_atomic

__all__ = ["plot_history", "plot_slices", "plot_target_curve", "write_summary"]


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_history(study: optuna.Study, path: Path) -> bool:
    """Optimisation history: every trial's loss (diverged trials marked) and the running best."""
    plt = _plt()
    if plt is None:
        return False
    trials = [t for t in study.trials if t.value is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    ok = [t for t in trials if not t.user_attrs.get("diverged")]
    bad = [t for t in trials if t.user_attrs.get("diverged")]
    ax.scatter([t.number for t in ok], [t.value for t in ok], s=14, label="trial")
    if bad:
        ax.scatter([t.number for t in bad], [t.value for t in bad], s=20, marker="x", color="red",
                   label="diverged (penalty)")
    best, xs, ys = math.inf, [], []
    for t in sorted(ok, key=lambda t: t.number):
        best = min(best, t.value)
        xs.append(t.number)
        ys.append(best)
    ax.step(xs, ys, where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("proxy validation loss (nats)")
    ax.set_title("optimisation history")
    ax.legend()
    save_figure(fig, path)
    return True


def plot_slices(study: optuna.Study, path: Path, log_params: set[str]) -> bool:
    """Loss against each searched HP (one panel per HP; log x-axis for log-scale HPs)."""
    plt = _plt()
    if plt is None:
        return False
    trials = [t for t in study.trials if t.value is not None and t.params]
    names = sorted({k for t in trials for k in t.params})
    if not names:
        return False
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        pts = [(t.params[name], t.value, bool(t.user_attrs.get("diverged"))) for t in trials if name in t.params]
        ax.scatter([p[0] for p in pts if not p[2]], [p[1] for p in pts if not p[2]], s=14,
                   c=[t.number for t in trials if name in t.params and not t.user_attrs.get("diverged")],
                   cmap="viridis")
        div = [p for p in pts if p[2]]
        if div:
            ax.scatter([p[0] for p in div], [p[1] for p in div], s=20, marker="x", color="red")
        if name in log_params:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("loss (nats)")
    fig.suptitle("loss vs hyperparameter (colour: trial number; x: diverged)")
    save_figure(fig, path)
    return True


def plot_target_curve(losses: list[float], val_curve: list[tuple[int, float]], proxy_loss: float, path: Path,
                      width: int) -> bool:
    """The target run: training loss per step (smoothed), validation points, and the proxy's best loss."""
    plt = _plt()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ema, smooth = None, []
    for v in losses:
        ema = v if ema is None else 0.95 * ema + 0.05 * v
        smooth.append(ema)
    ax.plot(range(1, len(losses) + 1), losses, alpha=0.25, color="C0")
    ax.plot(range(1, len(smooth) + 1), smooth, color="C0", label=f"train loss, width {width}")
    if val_curve:
        ax.plot([s for s, _ in val_curve], [v for _, v in val_curve], "o-", color="C1", label="validation loss")
    ax.axhline(proxy_loss, ls="--", color="gray", label=f"best proxy loss {proxy_loss:.4f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title("target training run with transferred hyperparameters")
    ax.legend()
    save_figure(fig, path)
    return True


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _loss(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_summary(path: Path, f: dict[str, Any]) -> None:
    """Write ``summary.md`` from the facts dict assembled by ``hptransfer._run``."""
    verdict = "PASS" if f["check_passed"] else "FAIL"
    lines = [
        f"# hptransfer run: {f['name']}",
        "",
        f"**Verdict: {verdict}** -- {f['check_text']}",
        "",
        f"Recipe `{f['recipe']}` (hash `{f['recipe_hash']}`), hptransfer {f['version']}, {f['created']}. "
        f"Total wall time {f['seconds']:.0f} s.",
        "",
        "## Result",
        "",
        "| | width | validation loss (nats) |",
        "|---|---|---|",
        f"| best proxy trial (#{f['best_trial']}) | {f['proxy_width']} | {f['proxy_loss']:.4f} |",
        f"| target run, transferred values | {f['target_width']} | {_loss(f['target_loss'])} |",
        f"| untrained (uniform) predictor | - | {f['untrained_loss']:.4f} |",
        "",
        "Transferred values (base width " + str(f["base_width"]) + "; μP rescales them per parameter group):",
        "",
        "| hyperparameter | value | searched |",
        "|---|---|---|",
    ]
    for k, v in f["values"].items():
        if v is None:
            continue
        lines.append(f"| `{k}` | {_fmt(v)} | {'yes' if k in f['searched'] else 'no (recipe default)'} |")
    lines += [
        "",
        "## Tuning",
        "",
        f"Study `{f['study']}` in `{f['storage']}`: {f['n_complete']} complete, {f['n_pruned']} pruned, "
        f"{f['n_diverged']} diverged (recorded with a penalty and a violated constraint), {f['n_failed']} failed "
        f"(re-queued). Sampler `{f['sampler']}`, pruner `{f['pruner']}`.",
        "",
        "## Compute",
        "",
        "Cost is estimated as 6 x parameters x tokens (forward + backward), from the steps each trial "
        "actually ran (diverged and pruned trials stop early).",
        "",
        "| | parameters | steps | FLOPs |",
        "|---|---|---|---|",
        f"| tuning: {f['n_trials']} proxy trials | {f['proxy_params']:,} | {f['tune_steps']:,} | "
        f"{f['tune_flops']:.3g} |",
        f"| one target run | {f['target_params']:,} | {f['target_steps']:,} | {f['target_flops']:.3g} |",
        "",
        f"**Tuning cost = {100 * f['compute_ratio']:.1f}% of one target run** "
        f"(TP5 tuned GPT-3 6.7B with ~7% of its pretraining compute). The ratio is about trials x proxy "
        "parameters / target parameters (equal steps and batch), so it is high at toy sizes and falls as the "
        "target grows.",
        "",
    ]
    if f["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in f["warnings"]] + [""]
    lines += ["## Files", "",
              "- `study.journal` -- the Optuna study (open with `optuna-dashboard study.journal`; rerun to resume)",
              "- `best.yaml` -- best proxy trial; `target.yaml` -- values, optimizer groups, base shapes, provenance",
              "- `target_run.json` -- the target run's losses",
              ]
    if f["plots"]:
        lines += [f"- `{p}`" for p in f["plots"]]
        lines += [""] + [f"![{p}]({p})" for p in f["plots"]]
    else:
        lines.append("- (plots skipped: matplotlib is not installed; pip install hptransfer[plot])")
    lines += ["", "Use the values in training code:", "", "```python", "import hptransfer",
              f"model, opt = hptransfer.load(\"{f['target_path']}\")", "```", ""]
    write_text_atomic(path, "\n".join(lines))
