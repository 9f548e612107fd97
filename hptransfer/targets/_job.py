"""``hptransfer run``: tune the proxy, transfer, train once at the target width, check, report.

The run folder (``out`` or ``runs/<name>``) ends up with: ``study.journal`` (the study;
running again resumes it), ``best.yaml``, ``target.yaml``, ``target_run.json``, three plots
and ``summary.md``. The closing check asks what "wider is better" predicts under μP: the
target run converged (finite, below the untrained loss) and did not do worse than the proxy.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._io import redact_url, write_text_atomic
from .._version import __version__
from ..check import Verdict
from ..errors import TransferError, info
from ..recipe import Recipe, amend, load_recipe
from ..studies import load_study
from ..studies._progress import Progress
from ..training import train_spec
from ..training._build import model_cost, torch_threads, untrained_loss
from ..tuning import TuneResult, tune
from . import _report
from ._transfer import Target, transfer

__all__ = ["run", "RunResult", "BEAT_TOLERANCE", "LEARNED_MARGIN", "edge_warnings"]

#: Relative slack when asking whether the target beat the proxy: the best proxy trial is the
#: minimum over many trials (optimistically biased by seed noise), the target run is one draw.
BEAT_TOLERANCE = 0.005

#: A best proxy loss above ``(1 - LEARNED_MARGIN)`` x the untrained predictor's loss means the
#: study learned nothing worth transferring: verdict INCONCLUSIVE (exit 1). 5%: the issue's
#: LR range 1..100 reached 1.9% below untrained; the quickstart reaches ~60% below.
LEARNED_MARGIN = 0.05


@dataclass
class RunResult:
    """Outcome of :func:`run`: the folder, the tuning result, the targets and the check."""

    run_dir: Path
    tune: TuneResult
    targets: list[Target]
    target_loss: float
    proxy_loss: float
    check_passed: bool
    check_text: str
    compute_ratio: float
    seconds: float
    verdict: Verdict = "pass"  # pass, fail or inconclusive (check_passed is True only for pass)


def run(
    recipe: str | Path | Recipe,
    *,
    workers: int | None = None,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> RunResult:
    """The whole job on one recipe: tune, transfer, one target run, check, plots and summary.

    Args:
        recipe: path to a YAML recipe, or a :class:`Recipe`.
        workers: local tuning processes (default: the recipe's ``tune.workers``).
        out: run folder (default: the recipe's ``out`` or ``runs/<name>``).
        overrides: ``"section.field=value"`` recipe overrides.
        quiet: no progress output.
        threads: torch threads for this process while the job runs (``None``: leave as is).
    """
    with torch_threads(threads):
        return _run(recipe, workers=workers, out=out, overrides=overrides, quiet=quiet)


def _run(recipe: str | Path | Recipe, *, workers: int | None, out: str | Path | None, overrides: list[str] | None,
         quiet: bool) -> RunResult:
    start = time.perf_counter()
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides)
    if rec.widths.target is None:
        raise TransferError("hptransfer run needs the target width: the recipe has no widths.target. Fix: add "
                            "`target:` under `widths:`.")
    run_dir = Path(out) if out is not None else rec.run_dir
    if out is not None:
        rec = amend(rec, data={"out": str(run_dir)})
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "recipe.yaml", yaml.safe_dump(rec.to_dict(), sort_keys=False))
    say = _say(quiet)
    say(f"[1/4] tuning {rec.name}: {rec.tune.trials} trials at width {list(rec.widths.proxy)} -> {run_dir}")
    tres = tune(rec, workers=workers, out=run_dir, quiet=quiet)
    _write_best(run_dir / "best.yaml", tres, rec)
    say(f"[2/4] best proxy loss {tres.best_value:.4f} (trial {tres.best_trial}); transferring to "
        f"{list(rec.widths.target or ())}")
    targets = transfer(rec, out=run_dir, quiet=quiet)
    main = max(targets, key=lambda t: t.width)
    t_steps = int(main.spec.train.steps or rec.train.steps or 0)  # 0: the user's train_fn decides
    say(f"[3/4] training the target (width {main.width}, {t_steps} steps)")
    bar = Progress(t_steps, enabled=not quiet, desc=f"target w{main.width}", unit="step")

    def progress(step: int, loss: float) -> None:
        bar.set_done(step + 1, note=f"loss {loss:.4g}")  # one run: the bar counts its steps

    every = rec.train.eval_every or max(1, t_steps // 10)
    res = train_spec(main.spec, eval_every=every, progress=progress, role="target")
    bar.close()
    run_record = {**res.to_dict(), "width": main.width, "losses": res.losses, "val_curve": res.val_curve}
    write_text_atomic(run_dir / "target_run.json", json.dumps(run_record))
    untrained = untrained_loss(rec.task)
    verdict, text = _verdict(res, tres.best_value, untrained, main.width, max(rec.widths.proxy))
    beat = verdict == "pass"
    say(f"[4/4] check: {verdict.upper()} -- {text}")

    study = load_study(tres.storage, tres.study_name)
    proxy_w = max(rec.widths.proxy)
    proxy_cost = model_cost(rec.at(proxy_w))
    target_cost = model_cost(main.spec)
    tune_steps = sum(int(t.user_attrs.get("train_steps", 0)) for t in study.trials)
    flops_per_step = proxy_cost["flops"] / rec.train.steps if rec.train.steps else math.nan
    tune_flops = tune_steps * flops_per_step
    ratio = tune_flops / target_cost["flops"] if target_cost["flops"] else math.nan
    plots = _plots(study, rec, res, tres.best_value, main.width, run_dir)
    seconds = time.perf_counter() - start
    facts: dict[str, Any] = {
        "name": rec.name, "recipe": rec.source or "(in memory)", "recipe_hash": rec.hash, "version": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": seconds,
        "check_passed": beat, "verdict": verdict, "check_text": text, "best_trial": tres.best_trial,
        "proxy_width": proxy_w,
        "proxy_loss": tres.best_value, "target_width": main.width,
        "target_loss": res.val_loss if math.isfinite(res.val_loss) else "diverged", "untrained_loss": untrained,
        "base_width": rec.base_width, "values": main.values, "searched": set(rec.search),
        "study": tres.study_name, "storage": redact_url(tres.storage).replace("journal://", ""),
        "n_complete": tres.n_complete,
        "n_pruned": tres.n_pruned, "n_diverged": tres.n_diverged, "n_failed": tres.n_failed,
        "sampler": rec.tune.sampler, "pruner": rec.tune.pruner,
        "n_trials": sum(not t.user_attrs.get("surplus") for t in study.trials),
        "proxy_params": proxy_cost["params"], "tune_steps": tune_steps, "tune_flops": tune_flops,
        "target_params": target_cost["params"], "target_steps": res.steps, "target_flops": target_cost["flops"],
        "compute_ratio": ratio, "plots": plots,
        "warnings": [*tres.diagnostics, *main.config["transfer"]["warnings"], *edge_warnings(rec, tres.best_params)],
        "target_path": str(main.path), "drift": main.config["transfer"].get("drift"),
        "axes": _report.axis_rules(main.spec, proxy_w, rec.depths.proxy),
    }
    _report.write_summary(run_dir / "summary.md", facts)
    say(f"done in {seconds:.0f} s: {run_dir / 'summary.md'} (tuning cost {100 * ratio:.1f}% of one target run)")
    return RunResult(run_dir, tres, targets, res.val_loss, tres.best_value, beat, text, ratio, seconds, verdict)


def _verdict(res: Any, proxy_loss: float, untrained: float, width: int, proxy_width: float) -> tuple[Verdict, str]:
    """``("pass" | "fail" | "inconclusive", reason)`` of the run's check.

    INCONCLUSIVE when the best proxy loss is within :data:`LEARNED_MARGIN` of the untrained
    (uniform) predictor's loss, ``ln(outputs)`` for the task (the model's output size must match it,
    or training refuses): a study that learned nothing cannot show that values transfer; when the
    target is no wider than the proxy (nothing was transferred); and when the target's loss is within
    :data:`BEAT_TOLERANCE` of the proxy's either way (seed noise could order them). PASS needs the
    target better than that.
    """
    if math.isfinite(untrained) and proxy_loss > untrained * (1 - LEARNED_MARGIN):
        return "inconclusive", (
            f"the best proxy loss {proxy_loss:.4f} is within {100 * LEARNED_MARGIN:.0f}% of an untrained predictor's "
            f"{untrained:.4f}: the study learned (almost) nothing, so transfer cannot be judged. Fix: move or widen "
            "search.lr (look at slices.png), raise train.steps, or check that the task is learnable.")
    converged = not res.diverged and math.isfinite(res.val_loss) and res.val_loss < untrained
    if not converged:
        return "fail", f"the target run did not converge ({res.reason or 'loss not below the untrained loss'})."
    if width <= proxy_width:
        return "inconclusive", (f"the target width {width} is not wider than the proxy's {proxy_width:g}: nothing was "
                                f"transferred (target {res.val_loss:.4f}, proxy {proxy_loss:.4f}). Fix: a wider "
                                "widths.target.")
    if res.val_loss < proxy_loss * (1 - BEAT_TOLERANCE):
        return "pass", (f"the target (width {width}) reached {res.val_loss:.4f} vs the proxy's {proxy_loss:.4f}: "
                        "converged, and wider is better as μP predicts.")
    if res.val_loss <= proxy_loss * (1 + BEAT_TOLERANCE):
        return "inconclusive", (f"the target (width {width}) reached {res.val_loss:.4f} vs the proxy's "
                                f"{proxy_loss:.4f}, within {100 * BEAT_TOLERANCE:.1f}%: too close to tell whether "
                                "wider is better. Fix: a wider target, longer training (train.steps), or more "
                                "train.seeds.")
    return "fail", (f"the target (width {width}) reached {res.val_loss:.4f}, worse than the proxy's {proxy_loss:.4f} "
                    f"by more than {100 * BEAT_TOLERANCE:.1f}%: the transfer did not hold. Check the parametrization "
                    "(hptransfer coord-check) and that batch size/steps match.")


def _plots(study: Any, rec: Recipe, res: Any, proxy_loss: float, width: int, run_dir: Path) -> list[str]:
    """Write the three run plots; the names of those written (matplotlib may be missing)."""
    plots = []
    if _report.plot_history(study, run_dir / "history.png"):
        plots.append("history.png")
    log_params = {k for k, p in rec.search.items() if p.type == "log_float"}
    if _report.plot_slices(study, run_dir / "slices.png", log_params):
        plots.append("slices.png")
    if _report.plot_target_curve(res.losses, res.val_curve, proxy_loss, run_dir / "target_curve.png", width):
        plots.append("target_curve.png")
    return plots


def edge_warnings(rec: Recipe, best: dict[str, Any], margin: float = 0.05) -> list[str]:
    """Warn for each searched numeric HP whose best value lies within ``margin`` (a fraction of
    the range, in log space for ``log_float``) of a bound: the true optimum may lie outside.
    Measured on the GPT recipe: an ``output_mult`` capped at 10 left the transferred LR half an
    octave low (docs/tuning.md)."""
    out = []
    for name, p in rec.search.items():
        if name not in best or p.type not in ("float", "log_float", "int") or p.low is None or p.high is None:
            continue
        lo, hi, v = float(p.low), float(p.high), float(best[name])
        if p.type == "log_float":
            lo, hi, v = math.log(lo), math.log(hi), math.log(v)
        if hi <= lo:
            continue
        pos = (v - lo) / (hi - lo)
        if pos < margin or pos > 1 - margin:
            side, bound = ("lower", p.low) if pos < margin else ("upper", p.high)
            out.append(f"the best `{name}` = {best[name]:.4g} lies at the {side} edge of its range ({bound:g}); "
                       f"the optimum may be outside it. Widen `search.{name}` and run again (the study resumes).")
    return out


def _write_best(path: Path, tres: TuneResult, rec: Recipe) -> None:
    data = {
        "study": tres.study_name, "storage": redact_url(tres.storage), "trial": tres.best_trial,
        "loss": tres.best_value,
        "params": dict(tres.best_params), "values": dict(tres.best_values), "proxy_widths": list(rec.widths.proxy),
        "recipe_hash": rec.hash, "hptransfer_version": __version__,
        "trials": {"complete": tres.n_complete, "pruned": tres.n_pruned, "diverged": tres.n_diverged,
                   "failed": tres.n_failed},
    }
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def _say(quiet: bool) -> Any:
    """Status lines to the ``hptransfer`` logger (INFO), none when ``quiet``."""
    return (lambda msg: None) if quiet else info
