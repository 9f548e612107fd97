"""How large must the adaptive check's early-stopping margin be? Measured on a full grid's journal.

    python scripts/calibrate_prune_margin.py runs/.../study.journal

For every pair of finished runs at the same parametrization, width and seed, the run that ends
*better* (lower validation loss) must never be stopped against the one that ends worse: the
smallest safe margin is the largest excess ``loss_b(c) / loss_a(c) - 1`` at any checkpoint ``c``
over pairs where ``b`` ends below ``a``. Also prints how many runs a margin would stop against
the final best run (an upper bound of what early stopping can save on that grid).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import optuna
from optuna.trial import TrialState

from hptransfer.studies import storage_url


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("journal")
    p.add_argument("--margins", default="0.05,0.1,0.2")
    args = p.parse_args()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(args.journal)) \
        if not args.journal.startswith(("journal:", "postgresql:")) else storage_url(args.journal, ".")
    runs: dict[tuple, list] = defaultdict(list)
    for s in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            cps = t.user_attrs.get("checkpoints")
            if cps and not t.user_attrs.get("diverged") and len(cps) == 3:
                key = (t.params["parametrization"], t.params["width"], t.params["seed"])
                runs[key].append((float(t.value), list(cps), t.params.get("lr")))
    worst, where, valley = 0.0, None, 0.0
    for key, rs in runs.items():
        lrs = sorted(lr for _, _, lr in rs)
        best_i = lrs.index(min(rs)[2])
        for fa, ca, _ in rs:
            for fb, cb, lr in rs:
                if fb < fa:
                    excess = max(b / a - 1 for a, b in zip(ca, cb))
                    if excess > worst:
                        worst, where = excess, (key, lr, fb, fa)
                    if abs(lrs.index(lr) - best_i) <= 2:  # b is in the refinement window the analysis reads
                        valley = max(valley, excess)
    print(f"{sum(map(len, runs.values()))} finished runs in {len(runs)} (parametrization, width, seed) groups")
    print(f"smallest safe margin: {worst:.4f} (a run that ends better was that far above a worse one: {where})")
    print(f"smallest margin that never stops a run within 2 grid steps of the final argmin: {valley:.4f}")
    for m in (float(x) for x in args.margins.split(",")):
        stopped = fracs = 0
        for rs in runs.values():
            _, ref, _ = min(rs)
            for _, c, _ in rs:
                k = next((i for i, (a, b) in enumerate(zip(ref, c)) if b > (1 + m) * a), None)
                if k is not None:
                    stopped += 1
                    fracs += 1 - (k + 1) / 4
        print(f"margin {m:g}: {stopped} of {sum(map(len, runs.values()))} finished runs would stop against the "
              f"best run, saving {fracs:.1f} runs' worth of steps")


if __name__ == "__main__":
    main()
