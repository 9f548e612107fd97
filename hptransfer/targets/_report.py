"""Run-folder reporting: the three plots and ``summary.md`` (the file a person reads first).

Plots need matplotlib (``pip install hptransfer[plot]``); without it the summary says so and
everything else is still written.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from .._io import new_figure, save_figure, write_text_atomic
from ..errors import HPTransferError

__all__ = ["plot_history", "plot_slices", "plot_target_curve", "write_summary"]


def _have_matplotlib() -> bool:
    """Whether matplotlib imports (Optuna's plots need it; the caller then skips the plot)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _optuna_plots() -> Iterator[Any]:
    """``optuna.visualization.matplotlib`` with its side effects kept inside the block.

    Its functions are experimental (each call warns) and apply ``plt.style.use("ggplot")`` to
    the whole process; the warning is silenced here only and the style is undone on exit
    (``rc_context``), so a notebook user's later figures keep their look. Save inside the block.
    """
    import matplotlib
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_mpl

    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield optuna_mpl


def _diverged(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.value is not None and t.user_attrs.get("diverged")]


def plot_history(study: optuna.Study, path: Path) -> bool:
    """Optimisation history (PNG at ``path``): every trial's loss and the running best.

    Optuna's ``plot_optimization_history`` draws it (diverged trials carry the ``diverged``
    constraint, so it greys them and leaves them out of the running best); this adds a red cross
    on each diverged trial (its value is the penalty, not a loss) and a legend entry for it.
    Returns False (nothing written) when matplotlib is missing.
    """
    if not _have_matplotlib():
        return False
    with _optuna_plots() as optuna_mpl:
        ax = optuna_mpl.plot_optimization_history(study, target_name="proxy validation loss (nats)")
        bad = _diverged(study)
        if bad:
            ax.scatter([t.number for t in bad], [t.value for t in bad], s=24, marker="x", color="red",
                       label="diverged (penalty)", zorder=3)
        ax.set_title("optimisation history")
        ax.set_xlabel("trial")
        handles, labels = ax.get_legend_handles_labels()
        names = {"proxy validation loss (nats)": "trial", "Best Value": "best so far"}
        # Inside the axes ("best" spot): Optuna's legend outside on the right squeezes the plot.
        ax.legend(handles, [names.get(x, x) for x in labels], loc="best")
        save_figure(ax.figure, path)
    return True


def plot_slices(study: optuna.Study, path: Path, log_params: set[str]) -> bool:
    """Loss against each searched HP (PNG at ``path``; one panel per HP, colour = trial number).

    Optuna's ``plot_slice`` draws it (log x-axis for log-scale distributions, diverged trials
    greyed as infeasible); this adds a red cross on each diverged trial and forces a log x-axis
    for the names in ``log_params`` (the recipe's ``log_float`` HPs). Returns False (nothing
    written) when matplotlib is missing or no finished trial has parameters.
    """
    trials = [t for t in study.trials if t.value is not None and t.params]
    names = sorted({k for t in trials for k in t.params})
    if not names or not _have_matplotlib():
        return False
    with _optuna_plots() as optuna_mpl:
        axes = optuna_mpl.plot_slice(study, params=names, target_name="loss (nats)")
        axes = list(axes.flat) if hasattr(axes, "flat") else [axes]
        bad = _diverged(study)
        for ax in axes:
            name = ax.get_xlabel()
            div = [t for t in bad if name in t.params]
            if div:
                ax.scatter([t.params[name] for t in div], [t.value for t in div], s=24, marker="x", color="red",
                           zorder=3)
            if name in log_params and ax.get_xscale() != "log":
                ax.set_xscale("log")
        fig = axes[0].figure
        fig.suptitle("loss vs hyperparameter (colour: trial number; red x: diverged)")
        save_figure(fig, path, tight=False)  # tight_layout misplaces Optuna's colorbar
    return True


def plot_target_curve(losses: list[float], val_curve: list[tuple[int, float]], proxy_loss: float, path: Path,
                      width: int) -> bool:
    """The target run: training loss per step (raw and smoothed), validation points, and the
    proxy's best loss as a dashed line (PNG at ``path``). Returns False when matplotlib is missing."""
    try:
        fig = new_figure("the target curve plot", HPTransferError, figsize=(6, 4))
    except HPTransferError:
        return False
    ax = fig.subplots()
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


def _drift_lines(d: dict[str, Any] | None, target_flops: float) -> list[str]:
    """The "Drift correction" section (``transfer.drift: fit``), or nothing."""
    if not d:
        return []
    lo, hi = d["ci95"]
    ci = f"[{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else "[n/a]"
    slope = f"{d['slope']:+.3f}" if d["slope"] is not None else "n/a"
    cost = f"{d['flops']:.3g} FLOPs ({100 * d['flops'] / target_flops:.1f}% of one target run)" \
        if d.get("flops") and target_flops else "n/a"
    verdict = (f"applied: LR x 2^{d['correction_octaves']:+.3f} ({d['lr_proxy']:.4g} -> {d['lr_target']:.4g})"
               if d["applied"] else f"not applied ({d['reason']}); the tuned LR {d['lr_proxy']:.4g} is used")
    form = d.get("form", "power")
    curve = ("a power law (log2 LR linear in log2 width)" if form == "power" else
             "a converging curve (log2 LR = a + b x proxy/width)")
    c_lo, c_hi = d.get("correction_ci95") or (None, None)
    extrapolated = (f" Extrapolated to width {d['target_width']}, the curve shifts the optimum by "
                    f"[{c_lo:+.2f}, {c_hi:+.2f}] octaves (95%)." if c_lo is not None and c_hi is not None else "")
    vs = d.get("runs_vs_fixed_grid", 0)
    runs = f"{d['runs']} runs" + (f" ({abs(vs)} {'more' if vs > 0 else 'fewer'} than the {d['grid_runs']} of a fixed "
                                  "local grid: bracketing)" if vs else "")
    return ["## Drift correction (transfer.drift: fit)", "",
            f"LR sweeps that walk until each optimum is bracketed (on a {len(d['grid'])}-value grid, with seeds) "
            f"at widths {d['widths']}, fitted with {curve}, give "
            f"a residual drift of the optimal LR of **{slope} octaves per width doubling** across those widths, "
            f"95% interval {ci}.{extrapolated} {verdict[0].upper() + verdict[1:]}.", "",
            f"Extra compute: {runs}, {cost}. Study `{d['study']}` (rerun resumes it).", ""]


def axis_rules(spec: Any, proxy_width: int, proxy_depth: int | None) -> list[str]:
    """One Markdown line per scaling axis: which rule carried the values from proxy to target, with its source."""
    from ..parametrization import get_parametrization

    if spec.parametrization is None:
        return [f"- **width** {proxy_width} -> {spec.width}: your train_fn parametrizes the model (the recipe sets no "
                "`parametrization`); hptransfer handed it the width and the values only."]
    rule = get_parametrization(spec.parametrization.name)
    width = (f"- **width** {proxy_width} -> {spec.width} (base {spec.base_width}): `{rule.name}` "
             + ("(one global LR, no width scaling)" if rule.name == "sp" else
                "(μP: hidden Adam LR x 1/m_d, readout multiplier 1/m_d, 1/d attention)") + f"; {rule.citation}.")
    if spec.depth is None:
        return [width, "- **depth**: fixed (the factory's own depth); no depth rule applies."]
    span = f"{proxy_depth} -> {spec.depth} (base {spec.base_depth})"
    if rule.depth_alpha is None:
        return [width, f"- **depth** {span}: built at each depth, NOT scaled (`{rule.name}` has no depth rule; "
                       "use `depth-mup` or `completep`)."]
    a = rule.depth_alpha
    return [width, f"- **depth** {span}: `{rule.name}`, residual branches x (L_base/L)^{a:g}, block Adam LR x "
                   f"m_L^({a:g}-1), Adam eps x m_L^-{a:g}, hidden weight decay x m_d; {rule.citation}."]


def write_summary(path: Path, f: dict[str, Any]) -> None:
    """Write ``summary.md`` from the facts dict assembled by :func:`hptransfer.targets.run`."""
    verdict = str(f.get("verdict") or ("pass" if f["check_passed"] else "fail")).upper()
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
        "Scaling rules applied on each axis:",
        "",
        *f.get("axes", []),
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
    lines += _drift_lines(f.get("drift"), f["target_flops"])
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
