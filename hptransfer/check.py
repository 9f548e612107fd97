"""Transfer check: do the optimal hyperparameters stay put as the model gets wider?

:func:`check_transfer` sweeps each HP over a log grid at three or more widths and two or more
seeds (an Optuna grid study on the tuner's storage, so it resumes and runs in parallel),
estimates the optimum at every width with a bootstrap interval (``_optimum``), and turns the
TP5 figure into numbers and a verdict:

* **drift** -- slope of the optimum against log2(width), octaves per width doubling;
* **shift** -- optimum at the largest width minus at the smallest (octaves);
* **regret** -- loss at the largest width with the smallest width's optimum, minus the best
  loss at the largest width (nats, and relative to that best loss);
* **wider is better** -- at the smallest width's optimum, loss must not rise with width.

A check *passes* when no optimum sits on the grid edge ("grid too narrow" otherwise, with
the range to try next), every grid point ran, and drift, regret and wider-is-better are
within :class:`Tolerances`. The defaults are justified in ``docs/verification.md``.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import _optimum
from ._check_recipe import check_recipe
from ._check_runner import SWEEPABLE, ModelRunner
from ._check_verdict import ParamResult, analyse
from ._io import write_text_atomic
from ._sweep import Runner, SweepPlan, run_sweep
from .errors import HPTransferError
from .train import Schedule

__all__ = ["check_transfer", "check_grid", "check_recipe", "TransferReport", "ParamResult", "Tolerances", "CheckError",
           "EXPECTATIONS"]

#: What a parametrization is expected to do: ``pass`` (gated), ``fail`` (gated: a control that
#: must be caught, e.g. SP in our own CI), ``any`` (reported only, e.g. SP under ``--compare``).
EXPECTATIONS = ("pass", "fail", "any")


class CheckError(HPTransferError):
    """A transfer check was asked for with bad input: fewer than 3 widths or 2 seeds, no ``lr``
    grid, a non-positive or unsorted grid, an unknown HP or expectation."""


@dataclass(frozen=True)
class Tolerances:
    """Pass/fail limits (recipe ``check.tolerances``). Defaults: see ``docs/verification.md``.

    Attributes:
        max_drift: largest |drift| in octaves per width doubling. Default 0.15.
        max_regret: largest transfer regret as a fraction of the best loss at the largest width.
            Default 0.02 (2%): about twice the regret seed noise alone produces (90th percentile
            1.2% on the MLP), a fifth of SP's measured regret (10-14%).
        max_wider_worse: largest rise of loss from one width to the next at the smallest width's
            optimum, as a fraction of the loss. Default 0.01 (1%): SP rises 2-4% per doubling on
            the MLP; μP falls.
    """

    max_drift: float = 0.15
    max_regret: float = 0.02
    max_wider_worse: float = 0.01

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise CheckError(f"tolerances.{name}={value!r} must be a positive number.")


@dataclass
class TransferReport:
    """Everything :func:`check_transfer` found. ``passed``: every result met its expectation."""

    results: list[ParamResult]
    tolerances: Tolerances
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    studies: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.met for r in self.results)

    @property
    def failing(self) -> list[ParamResult]:
        """Results that did not meet their expectation."""
        return [r for r in self.results if not r.met]

    def result(self, parametrization: str, hp: str = "lr") -> ParamResult:
        """The result for one parametrization and HP (KeyError-free: raises CheckError naming both)."""
        for r in self.results:
            if r.parametrization == parametrization and r.hp == hp:
                return r
        raise CheckError(f"no result for parametrization {parametrization!r} and HP {hp!r} in this report.")

    def summary(self) -> str:
        """A text table: one row per (parametrization, HP), then the reasons of each non-pass."""
        from ._check_text import summary_text

        return summary_text(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (non-finite numbers become ``None``)."""
        return {"passed": self.passed, "tolerances": asdict(self.tolerances), "config": self.config,
                "seconds": round(self.seconds, 1), "studies": list(self.studies),
                "results": [r.to_dict() for r in self.results], "comparison": self.comparison()}

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text + "\n")
        return text

    def junit_xml(self, path: str | Path | None = None) -> str:
        """JUnit XML (one test case per parametrization and HP); also written to ``path``."""
        from ._junit import junit_xml

        return junit_xml(self, path)

    def plot(self, path: str | Path, hp: str = "lr") -> Path:
        """The TP5-style PNG for ``hp``: loss vs log2 HP per width, one column per parametrization,
        and the optimum against width with the fitted line underneath."""
        from ._check_plot import plot_report

        return plot_report(self, path, hp=hp)

    def comparison(self) -> list[dict[str, Any]]:
        """For every HP checked under several parametrizations: does each μP-like drift interval
        exclude the others' drift (e.g. ``mup`` vs ``sp``)?"""
        out = []
        for hp in dict.fromkeys(r.hp for r in self.results):
            rs = [r for r in self.results if r.hp == hp]
            for a in rs:
                for b in rs:
                    if a is not b:
                        out.append({"hp": hp, "interval_of": a.parametrization, "drift_of": b.parametrization,
                                    "excludes": bool(not (a.drift.lo <= b.drift.slope <= a.drift.hi))})
        return out


def check_transfer(
    factory: Callable[..., Any],
    task: Any,
    *,
    widths: Sequence[int],
    grid: Mapping[str, Sequence[float]],
    seeds: Sequence[int] = (0, 1),
    parametrizations: Sequence[str] = ("mup",),
    steps: int = 300,
    batch_size: int = 32,
    base_width: int | None = None,
    optimizer: str = "adam",
    schedule: Schedule | None = None,
    fixed: Mapping[str, float] | None = None,
    tolerances: Tolerances | None = None,
    expect: Mapping[str, str] | None = None,
    storage: str | None = None,
    study_prefix: str = "hptransfer",
    workers: int = 1,
    n_boot: int = _optimum.DEFAULT_N_BOOT,
    parametrize_options: Mapping[str, Any] | None = None,
    optimizer_options: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> TransferReport:
    """Sweep HPs at several widths, estimate the optimum per width and judge whether it transfers.

    Args:
        factory: ``width -> nn.Module`` (module-level for ``workers > 1``), or a built-in model
            name (``"mlp"``, ``"gpt"``, ``"cnn"``; the task's sizes are passed to it).
        task: a :class:`hptransfer.tasks.Task` or a built-in task name.
        widths: three or more widths; batch size and steps stay the same at every width.
        grid: ``{hp: values}``; ``lr`` is required, ``init_std``, ``output_mult``, ``attn_mult``
            optional. Values are positive and analysed in log2 (e.g. ``2 ** np.arange(-14, -5, 0.5)``:
            half-octave steps). Each HP is swept with the others at ``fixed``.
        seeds: two or more training seeds (default ``(0, 1)``; 3+ give tighter intervals).
        parametrizations: e.g. ``("mup",)`` (default) or ``("sp", "mup")`` to compare on one grid.
        steps, batch_size: per run (defaults 300 and 32).
        base_width: base width of the parametrization (default: the smallest width).
        optimizer: ``"adam"`` (default), ``"adamw"`` or ``"sgd"``.
        schedule: LR schedule (default constant).
        fixed: values of non-swept HPs (``lr`` is needed when sweeping another HP).
        tolerances: pass/fail limits (default :class:`Tolerances`).
        expect: ``{parametrization: "pass" | "fail" | "any"}``; default every one must pass.
        storage: journal file path or ``postgresql://`` URL (the tuner's); default in memory.
        study_prefix: study names are ``{prefix}-check-{hp}-{hash of the settings}``.
        workers: local worker processes (needs ``storage``). Default 1.
        n_boot: bootstrap replicates (default 1000).
        parametrize_options, optimizer_options: passed to ``parametrize`` and the optimizer.
        progress: called with one-line progress messages (e.g. ``print``).

    Returns:
        A :class:`TransferReport`; ``report.passed`` is the gate.

    Raises:
        CheckError: bad widths, seeds, grid, HP names or expectations.
    """
    from .tasks import Task, get_task

    task_obj = get_task(task) if isinstance(task, str) else task
    if isinstance(factory, str):
        from .models import get_model

        kwargs = task_obj.model_kwargs() if isinstance(task_obj, Task) else {}
        factory = functools.partial(get_model(factory), **kwargs)
    widths_t = tuple(sorted(int(w) for w in widths))
    runner = ModelRunner(factory=factory, task=task_obj, steps=int(steps), batch_size=int(batch_size),
                         base_width=int(base_width or widths_t[0]), optimizer=optimizer,
                         schedule=schedule or Schedule(decay="constant"),
                         parametrize_options=dict(parametrize_options or {}),
                         optimizer_options=dict(optimizer_options or {}))
    return check_grid(runner, widths=widths_t, grid=grid, seeds=seeds, parametrizations=parametrizations,
                      fixed=fixed, tolerances=tolerances, expect=expect, storage=storage,
                      study_prefix=study_prefix, workers=workers, n_boot=n_boot, progress=progress,
                      config={"steps": int(steps), "batch_size": int(batch_size), "optimizer": optimizer,
                              "base_width": runner.base_width})


def check_grid(
    runner: Runner,
    *,
    widths: Sequence[int],
    grid: Mapping[str, Sequence[float]],
    seeds: Sequence[int] = (0, 1),
    parametrizations: Sequence[str] = ("mup",),
    fixed: Mapping[str, float] | None = None,
    tolerances: Tolerances | None = None,
    expect: Mapping[str, str] | None = None,
    storage: str | None = None,
    study_prefix: str = "hptransfer",
    workers: int = 1,
    n_boot: int = _optimum.DEFAULT_N_BOOT,
    progress: Callable[[str], None] | None = None,
    config: dict[str, Any] | None = None,
) -> TransferReport:
    """:func:`check_transfer` with any :class:`~hptransfer._sweep.Runner` (the recipe route uses
    :class:`~hptransfer._check_runner.RecipeRunner`). Arguments as for :func:`check_transfer`."""
    plans = _plans(widths, grid, seeds, parametrizations, fixed)
    expect_map = _expectations(expect, parametrizations)
    tol = tolerances or Tolerances()
    start = time.perf_counter()
    if storage is None:
        url = "inmemory"
    else:
        from ._storage import storage_url

        url = storage_url(storage, ".")
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would drown the report
    try:
        data = run_sweep(runner, plans, url=url, prefix=study_prefix, workers=workers, progress=progress)
    finally:
        optuna.logging.set_verbosity(verbosity)
    results = [analyse(d, p, tol, expect=expect_map[p], n_boot=n_boot) for d in data for p in d.plan.parametrizations]
    cfg = {"widths": list(plans[0].widths), "seeds": list(plans[0].seeds), "parametrizations": list(parametrizations),
           "grid": {p.hp: list(p.values) for p in plans}, "fixed": dict(fixed or {}), "storage": _redact(url),
           "train_seconds": round(sum(d.seconds for d in data), 1), **(config or {})}
    return TransferReport(results, tol, cfg, time.perf_counter() - start, [d.study for d in data])



def _plans(widths: Sequence[int], grid: Mapping[str, Sequence[float]], seeds: Sequence[int],
           parametrizations: Sequence[str], fixed: Mapping[str, float] | None) -> list[SweepPlan]:
    ws = tuple(sorted({int(w) for w in widths}))
    if len(ws) < 3 or min(ws) < 1:
        raise CheckError(f"widths={list(widths)} must hold at least 3 distinct positive widths (a slope from two "
                         "points has no uncertainty). Fix: e.g. widths=[64, 128, 256, 512].")
    ss = tuple(dict.fromkeys(int(s) for s in seeds))
    if len(ss) < 2:
        raise CheckError(f"seeds={list(seeds)} must hold at least 2 distinct seeds (the interval comes from "
                         "resampling seeds). Fix: seeds=[0, 1, 2].")
    if "lr" not in grid:
        raise CheckError(f"grid has {sorted(grid)} but the learning rate is required. Fix: add "
                         "grid={'lr': [...]} (e.g. half-octave steps 2**-14 .. 2**-6).")
    ps = tuple(dict.fromkeys(str(p) for p in parametrizations))
    if not ps:
        raise CheckError("parametrizations is empty. Fix: parametrizations=['mup'] or ['sp', 'mup'].")
    fixed_d = {k: float(v) for k, v in (fixed or {}).items()}
    plans = []
    for hp, values in grid.items():
        if hp not in SWEEPABLE:
            raise CheckError(f"grid HP {hp!r} cannot be swept by the check. Fix: use one of {', '.join(SWEEPABLE)}.")
        vals = tuple(float(v) for v in values)
        if len(vals) < 3 or any(not (v > 0 and math.isfinite(v)) for v in vals):
            raise CheckError(f"grid.{hp} needs at least 3 positive finite values, got {list(values)}. Fix: e.g. "
                             f"2 ** np.arange(-14, -5, 0.5).")
        if list(vals) != sorted(set(vals)):
            raise CheckError(f"grid.{hp} must be strictly increasing without duplicates. Fix: sort it.")
        if hp != "lr" and "lr" not in fixed_d:
            raise CheckError(f"sweeping {hp!r} needs a fixed learning rate for that sweep. Fix: pass "
                             "fixed={'lr': <your tuned lr>}.")
        plans.append(SweepPlan(hp, vals, ws, ss, ps, {k: v for k, v in fixed_d.items() if k != hp}))
    return plans


def _expectations(expect: Mapping[str, str] | None, parametrizations: Sequence[str]) -> dict[str, str]:
    out = {str(p): "pass" for p in parametrizations}
    for p, e in (expect or {}).items():
        if p not in out:
            raise CheckError(f"expect names parametrization {p!r}, which is not checked ({', '.join(out)}). "
                             "Fix: add it to parametrizations or drop it from expect.")
        if e not in EXPECTATIONS:
            raise CheckError(f"expect[{p!r}]={e!r} is not one of {', '.join(EXPECTATIONS)}.")
        out[p] = e
    return out


def _redact(url: str) -> str:
    """The storage URL without its password (reports end up in CI artifacts)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
