"""The recipe sections of the stages around the runs: the study (``tune``), ``transfer`` and ``check``.

Declared with :func:`~hptransfer.recipe.spec_field` like the run sections (``_sections``); re-exported
by :mod:`hptransfer.recipe`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from ..errors import CheckError
from ._sections import (
    LAWS,
    MAX_BATCH,
    MAX_SEED,
    MAX_STEPS,
    MAX_TRIALS,
    MAX_WIDTH,
    MAX_WORKERS,
    PRUNERS,
    SAMPLERS,
    Law,
    Pruner,
    Sampler,
)
from ._spec import spec_field

__all__ = ["TuneSpec", "TransferSpec", "GridSpec", "TolerancesSpec", "CheckSpec", "PRUNE_MARGINS"]

#: Relative margin above the best run's training loss, per checkpoint (25/50/75% of the steps), beyond
#: which the adaptive check stops a run: about twice the largest gap measured between a run and a
#: worse-ending one on the shipped recipes' full grids (``scripts/calibrate_prune_margin.py``; MLP
#: 0.62, 0.20, 0.13; GPT 0.12, 0.10, 0.05). Early in a warmup + cosine schedule low-LR runs lag far
#: behind and then catch up, so the first checkpoint needs by far the widest margin.
PRUNE_MARGINS: tuple[float, ...] = (1.25, 0.4, 0.25)


@dataclass
class TuneSpec:
    """The Optuna study: sampler, pruner, budget, storage."""

    trials: int = spec_field(30, kind="int", minimum=1, maximum=MAX_TRIALS,
                             doc="Total trials in the study; a rerun continues up to this total. Default 30.")
    sampler: Sampler = spec_field("gp", kind="choice", choices=SAMPLERS,
                              doc="`gp` (default; best measured for 1-4 log-scale HPs), `tpe` (categorical "
                                  "spaces, pruning), `random`, `qmc`.")
    pruner: Pruner = spec_field("none", kind="choice", choices=PRUNERS,
                             doc="`none` (default), `median`, `successive_halving` or `hyperband`.")
    seed: int = spec_field(0, kind="int", minimum=0, maximum=MAX_SEED,
                           doc="Sampler seed; worker i uses seed + i. Default 0.")
    startup_trials: int = spec_field(8, kind="int", minimum=1, maximum=MAX_TRIALS,
                                     doc="Random trials before the model-based sampler starts. Default 8.")
    workers: int = spec_field(1, kind="int", minimum=1, maximum=MAX_WORKERS, doc="Local worker processes. Default 1.")
    storage: str | None = spec_field(None, kind="str", optional=True,
                                     doc="Study storage: a journal file path (or `journal:///abs/path`) or "
                                         "`postgresql://...`; `${VAR}` is taken from the environment. Default: "
                                         "`study.journal` in the run folder.")
    study: str | None = spec_field(None, kind="str", optional=True,
                                   doc="Study name. Default: the recipe name.")
    reconnect: int = spec_field(60, kind="int", minimum=0, maximum=3600,
                                doc="PostgreSQL only: seconds a worker keeps retrying a lost database connection (a "
                                    "server restart) before it exits 3. 0: off. Default 60.")
    heartbeat: int = spec_field(30, kind="int", minimum=0, maximum=3600,
                                doc="PostgreSQL only: seconds between a running trial's heartbeats. A trial silent "
                                    "for 4x this long (its worker died or froze, on any host) is failed and its "
                                    "parameters run once more. 0: off. Default 30.")
    report_every: int = spec_field(0, kind="int", minimum=0,
                                   doc="Report the loss to the pruner every this many steps (0: steps/20).")


@dataclass
class TransferSpec:
    """What changes between proxy and target besides width (μP does not cover these)."""

    batch_size: int | None = spec_field(None, kind="int", minimum=1, maximum=MAX_BATCH, optional=True,
                                        doc="Target batch size. Default null: same as `train.batch_size`.")
    steps: int | None = spec_field(None, kind="int", minimum=1, maximum=MAX_STEPS, optional=True,
                                   doc="Target steps. Default null: same as `train.steps`.")
    law: Law = spec_field("none", kind="choice", choices=LAWS,
                          doc="Opt-in empirical LR law when batch/steps change: `none` (default, warn only), "
                              "`step_law` (arXiv:2503.04715) or `deepseek` (arXiv:2401.02954).")
    drift: Literal["none", "fit"] = spec_field(
        "none", kind="choice", choices=("none", "fit"),
        doc="`fit`: after tuning, sweep the LR locally at `fit_widths`, fit the optimum's residual drift with "
            "width and extrapolate the LR to the target (docs/tuning.md). Default `none`: the tuned LR as is.")
    fit_widths: tuple | None = spec_field(None, kind="ints", minimum=1, optional=True,
                                          doc="Extra widths of the drift fit (besides the proxy), below the target. "
                                              "Default: 2x and 4x the proxy width.")
    fit_form: Literal["auto", "power", "converging"] = spec_field(
        "auto", kind="choice", choices=("auto", "power", "converging"),
        doc="Curve of log2 optimal LR against width that the drift fit extrapolates: `power` (a straight line "
            "in log2 width, the SP practice), `converging` (a 1/width approach to a limit, as μP's infinite-width "
            "limit implies) or `auto` (default: `power` under SP, `converging` otherwise). docs/tuning.md.")
    fit_points: int = spec_field(5, kind="int", minimum=3, maximum=15,
                                 doc="LR values of the local grid around the tuned LR; each width's sweep starts "
                                     "with 3 of them around its predicted optimum. Default 5.")
    fit_step: float = spec_field(0.5, kind="float", minimum=0.0, exclusive_min=True, maximum=2.0,
                                 doc="Octaves between fit LR values. Default 0.5 (the 5 points span 2 octaves).")
    fit_extend: int = spec_field(4, kind="int", minimum=0, maximum=20,
                                 doc="Grid points the sweep may add beyond the local grid on either side to "
                                     "bracket an optimum that moved out of it (one at a time, reusing the runs "
                                     "made). Default 4 (2 octaves more each side at the default step).")
    fit_seeds: tuple = spec_field((0, 1), kind="ints", minimum=0,
                                  doc="Seeds of every fit run (2 or more: the interval resamples them). "
                                      "Default [0, 1].")
    fit_max_halfwidth: float = spec_field(0.3, kind="float", minimum=0.0, exclusive_min=True,
                                          doc="Largest half-width of the slope's 95% interval (octaves per "
                                              "doubling) for the correction to be applied. Default 0.3.")
    fit_force: bool = spec_field(False, kind="bool",
                                 doc="Apply the fitted correction even when the fit is untrustworthy. Default false.")


@dataclass
class GridSpec:
    """A log grid of one HP: ``low`` to ``high`` in steps of ``1/per_octave`` octave."""

    low: float | None = spec_field(None, kind="float", minimum=0.0, exclusive_min=True, optional=True,
                                   doc="Smallest value (> 0). Required unless `values` is given.")
    high: float | None = spec_field(None, kind="float", minimum=0.0, exclusive_min=True, optional=True,
                                    doc="Largest value. Required unless `values` is given.")
    per_octave: float = spec_field(2.0, kind="float", minimum=0.0, exclusive_min=True,
                                   doc="Grid points per octave (factor 2). Default 2: half-octave steps.")
    values: tuple | None = spec_field(None, kind="floats", minimum=0.0, exclusive_min=True, optional=True,
                                      doc="The grid's values themselves (3 or more, increasing), instead of "
                                          "`low`/`high`/`per_octave`.")

    def points(self) -> list[float]:
        """The grid: ``values``, or ``low * 2 ** (k / per_octave)`` up to ``high`` (within 1e-9)."""
        if self.values is not None:
            return [float(v) for v in self.values]
        assert self.low is not None and self.high is not None  # parse_recipe refuses a grid without either
        n = math.floor(math.log2(self.high / self.low) * self.per_octave + 1e-9)
        return [float(self.low * 2.0 ** (k / self.per_octave)) for k in range(n + 1)]


@dataclass(frozen=True)
class TolerancesSpec:
    """Pass/fail limits of the transfer check (``hptransfer.check.Tolerances`` is this class).

    Defaults, measured in docs/verification.md: |drift| <= 0.15 octave per width doubling; regret <= 2%
    of the best loss at the largest width (about twice what seed noise alone produces, 90th percentile
    1.2% on the MLP, and a fifth of SP's measured 10-14%); loss rising <= 1% per width doubling at the
    smallest width's optimum (SP rises 2-4% per doubling on the MLP; μP falls).
    """

    max_drift: float = spec_field(0.15, kind="float", minimum=0.0, exclusive_min=True,
                                  doc="Largest |drift| of the optimum, octaves per width doubling. Default 0.15.")
    max_regret: float = spec_field(0.02, kind="float", minimum=0.0, exclusive_min=True,
                                   doc="Largest transfer regret as a fraction of the best loss. Default 0.02.")
    max_wider_worse: float = spec_field(0.01, kind="float", minimum=0.0, exclusive_min=True,
                                        doc="Largest loss rise from one width to the next at the proxy's optimum, "
                                            "as a fraction of the loss. Default 0.01.")

    def __post_init__(self) -> None:  # a recipe is checked field by field; this guards the Python door
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise CheckError(f"tolerances.{f.name}={value!r} must be a positive number.")


@dataclass
class CheckSpec:
    """The transfer check (`hptransfer check RECIPE`): widths, grids, seeds, tolerances."""

    widths: tuple | None = spec_field(None, kind="ints", minimum=1, maximum=MAX_WIDTH, optional=True,
                                      doc="Widths (3 or more). Default: doublings from the smallest proxy width "
                                          "to the largest target width.")
    depths: tuple | None = spec_field(None, kind="ints", minimum=1, optional=True,
                                      doc="Depths (3 or more) for `hptransfer check --axis depth`, at the smallest "
                                          "proxy width. Default: doublings from `depths.proxy` to `depths.target`.")
    seeds: tuple = spec_field((0, 1), kind="ints", minimum=0, maximum=MAX_SEED,
                              doc="Training seeds (2 or more). Default [0, 1].")
    lr: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,
                                     doc="LR grid. Default: `search.lr` low/high, 2 points per octave.")
    init_std: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,
                                           doc="Also sweep the init std over this grid. Default: not swept.")
    output_mult: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,
                                              doc="Also sweep the output multiplier. Default: not swept.")
    attn_mult: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,
                                            doc="Also sweep the attention multiplier. Default: not swept.")
    eps: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,
                                      doc="Also sweep Adam's epsilon. Default: not swept.")
    muon_lr_ratio: GridSpec | None = spec_field(None, kind="section", section=GridSpec, optional=True,
                                                doc="Also sweep `optimizer.muon_lr_ratio` (`muon` only). Default: "
                                                    "not swept.")
    steps: int | None = spec_field(None, kind="int", minimum=1, maximum=MAX_STEPS, optional=True,
                                   doc="Steps per run. Default: `train.steps` (the same at every width).")
    batch_size: int | None = spec_field(None, kind="int", minimum=1, maximum=MAX_BATCH, optional=True,
                                        doc="Batch size per run. Default: `train.batch_size`.")
    compare: tuple | None = spec_field(None, kind="strs", optional=True,
                                       doc="Parametrizations to run side by side, e.g. [sp, mup]. Default: only "
                                           "`parametrization.name`.")
    expect: dict = spec_field(kind="mapping", factory=dict,
                              doc="Expected verdict per parametrization (`pass`, `fail`, `any`). Default: the "
                                  "recipe's parametrization must pass, compared ones are reported (`any`).")
    tolerances: TolerancesSpec = spec_field(kind="section", section=TolerancesSpec,
                                            factory=TolerancesSpec,
                                            doc="Pass/fail limits.")
    workers: int | str = spec_field("auto", kind="int", auto=True, minimum=1, maximum=MAX_WORKERS,
                                    doc="Local worker processes of the grid strategy. Default `auto`: one per CPU "
                                        "core (`os.cpu_count()`); 1 runs in this process. The adaptive strategy "
                                        "runs in one process.")
    prune: bool = spec_field(True, kind="bool",
                             doc="Adaptive strategy: stop runs away from the optimum early, when their training "
                                 "loss at 25/50/75% of the steps is far above the best run's at that width and "
                                 "seed (docs/verification.md). Default true.")
    prune_margins: tuple = spec_field(PRUNE_MARGINS, kind="floats", minimum=0.0, exclusive_min=True,
                                      doc="Adaptive strategy: how far above the best run's loss (a fraction) a run "
                                          "must be at 25/50/75% of its steps to be stopped. Default "
                                          "[1.25, 0.4, 0.25] (measured: docs/verification.md).")
    bootstrap: int = spec_field(1000, kind="int", minimum=50, doc="Bootstrap replicates. Default 1000.")
    extend: int = spec_field(2, kind="int", minimum=0, maximum=20,
                             doc="Adaptive strategy: grid points it may add beyond each end of a grid, at the end's "
                                 "spacing, when a width's optimum walks out of it (runs only where it does). "
                                 "Default 2 (one octave at 2 points per octave); 0: the grid as written.")
    strategy: Literal["grid", "adaptive"] = spec_field(
        "grid", kind="choice", choices=("grid", "adaptive"),
        doc="`grid` (default): train every grid point. `adaptive`: survey the first width on the first seed (and "
            "the tuned LR), walk each width to its optimum from the previous one's and run every seed only on the "
            "points the analysis reads, stopping hopeless runs early (`prune`); in one process "
            "(docs/verification.md).")
