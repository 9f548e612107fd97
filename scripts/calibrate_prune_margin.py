"""How large must the adaptive check's early-stopping margins be? Measured on a full grid's journal.

    python scripts/calibrate_prune_margin.py runs/.../study.journal

For every pair of finished runs at the same parametrization, width and seed, the run that ends
*better* (lower validation loss) must never be stopped against the one that ends worse: at each
checkpoint, the smallest safe margin is the largest excess ``loss_b(c) / loss_a(c) - 1`` over the
pairs where ``b`` ends below ``a`` (and, second column, where ``b`` is also within two grid steps of
the final argmin, the points the analysis reads). Also prints how many runs the default margins
would stop against the best run (an upper bound of what early stopping can save on that grid).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import optuna
from optuna.trial import TrialState

from hptransfer.check._prune import CHECKPOINTS, DEFAULT_MARGINS


def _runs(journal: str) -> dict[tuple, list]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    runs: dict[tuple, list] = defaultdict(list)
    for s in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            cps = t.user_attrs.get("checkpoints")
            if cps and not t.user_attrs.get("diverged") and len(cps) == len(CHECKPOINTS):
                key = (t.params["parametrization"], t.params["width"], t.params["seed"])
                runs[key].append((float(t.value), list(cps), t.params.get("lr")))
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("journal")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = _runs(args.journal)
    print(f"{sum(map(len, runs.values()))} finished runs in {len(runs)} (parametrization, width, seed) groups")
    for k, frac in enumerate(CHECKPOINTS):
        worst = valley = 0.0
        for rs in runs.values():
            lrs = sorted(lr for _, _, lr in rs)
            best_i = lrs.index(min(rs)[2])
            for fa, ca, _ in rs:
                for fb, cb, lr in rs:
                    if fb < fa:
                        worst = max(worst, cb[k] / ca[k] - 1)
                        if abs(lrs.index(lr) - best_i) <= 2:
                            valley = max(valley, cb[k] / ca[k] - 1)
        print(f"checkpoint {frac:.0%}: smallest safe margin {worst:.3f} (runs near the optimum: {valley:.3f}); "
              f"default {DEFAULT_MARGINS[k]:g}")
    stopped = saved = 0.0
    for rs in runs.values():
        _, ref, _ = min(rs)
        for _, c, _ in rs:
            k = next((i for i, (a, b) in enumerate(zip(ref, c)) if b > (1 + DEFAULT_MARGINS[i]) * a), None)
            if k is not None:
                stopped += 1
                saved += 1 - CHECKPOINTS[k]
    print(f"default margins: {stopped:.0f} finished runs would stop against the best run, saving {saved:.1f} "
          "runs' worth of steps")


if __name__ == "__main__":
    main()
