"""Replay the adaptive check on a finished full grid: its runs, verdicts and intervals, no training.

    python scripts/replay_check.py GRID_JOURNAL GRID_REPORT.json [--start LR] [--lead SEED]
        [--set PARAMETRIZATION,WIDTH,SEED,LR=LOSS ...]

Every run the adaptive strategy asks for is answered from the grid's study (the same grid points,
so the same losses), which makes a change to the adaptive strategy testable against a real loss
landscape in seconds. Early stopping is not replayed (the grid kept no per-step losses), so the
runs printed are finished runs at full length. ``--lead`` puts that seed first (the adaptive strategy
explores on the first seed); ``--set`` overwrites one run's loss, to stress-test the strategy on a
landscape the grid did not produce (both strategies see the edited value).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hptransfer.check._check import check_grid
from hptransfer.training import TrainResult


@dataclass
class Replay:
    """A check runner answering from ``table[(parametrization, width, seed, 2 log2 lr)]``."""

    table: dict
    penalty: float = 10.0
    calls: list = field(default_factory=list)

    def fingerprint(self) -> str:
        return "replay"

    def __call__(self, parametrization: str, width: int, seed: int, hps: dict) -> TrainResult:
        key = (parametrization, width, seed, round(2 * math.log2(hps["lr"])))
        self.calls.append(key)
        value, diverged = self.table[key]
        return TrainResult(val_loss=math.inf if diverged else value, diverged=diverged, steps=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("journal")
    p.add_argument("report")
    p.add_argument("--start", type=float, default=None, help="where the first width starts (default: fixed lr)")
    p.add_argument("--lead", type=int, default=None, help="the seed the adaptive strategy explores on")
    p.add_argument("--set", action="append", default=[], metavar="PAR,WIDTH,SEED,LR=LOSS",
                   help="overwrite one run's loss, e.g. mup,32,0,0.004=2.82")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = json.loads(Path(args.report).read_text())["config"]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(args.journal))
    table = {}
    for s in optuna.get_all_study_summaries(storage):
        for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(
                deepcopy=False, states=(TrialState.COMPLETE,)):
            q = t.params
            key = (q["parametrization"], q["width"], q["seed"], round(2 * math.log2(q["lr"])))
            table[key] = (float(t.value), bool(t.user_attrs.get("diverged")))
    for edit in args.set:
        where, loss = edit.split("=")
        par, width, seed, lr = where.split(",")
        table[(par, int(width), int(seed), round(2 * math.log2(float(lr))))] = (float(loss), False)
    seeds = cfg["seeds"] if args.lead is None else [args.lead, *(s for s in cfg["seeds"] if s != args.lead)]
    for strategy in ("grid", "adaptive"):
        runner = Replay(table)
        rep = check_grid(runner, widths=cfg["widths"], grid=cfg["grid"], seeds=seeds,
                         parametrizations=cfg["parametrizations"], fixed=cfg["fixed"], strategy=strategy,
                         start=args.start or cfg["fixed"].get("lr"), expect={q: "any" for q in cfg["parametrizations"]})
        for r in rep.results:
            d = r.drift
            print(f"{strategy:8s} {r.parametrization:5s} {r.verdict:16s} drift {d.slope:+.3f} "
                  f"[{d.lo:+.3f}, {d.hi:+.3f}] half-width {(d.hi - d.lo) / 2:.3f} "
                  f"optima {[round(o.x, 2) for o in r.optima]} "
                  f"regret {100 * r.regret_rel:.2f}% runs {len(runner.calls)}")


if __name__ == "__main__":
    main()
