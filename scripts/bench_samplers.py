"""Which Optuna sampler should ``tune`` use by default? A measurement on a real landscape.

1. Landscape: train the quickstart MLP recipe (width 64, 200 steps) on a log grid of
   (lr, output_mult) -- the typical 2 log-scale HPs -- and record the validation loss, or
   divergence, at every grid point (cached in ``--out``/landscape.json).
2. Benchmark: each sampler runs ``--trials`` trials on a surrogate that interpolates the grid
   bilinearly in log space (diverged cells stay diverged: penalty + constraint, as ``tune``
   records them), ``--repeats`` times with different seeds. Observations get Gaussian noise
   with the seed-to-seed std measured at the grid's best point. ``--dims 4`` adds two
   synthetic log-scale HPs (quadratic bowls in octaves, 0.01 nats per octave^2 off their
   optimum) to model a 4-HP search. Reported: median regret (the *noise-free* loss of the
   trial the sampler would pick, minus the surface minimum) after 20, 50 and 100 trials, and
   the oracle regret (best noise-free loss among the points tried). ``--noise 0`` is what
   ``tune`` sees: each trial trains with fixed seeds, so the objective is deterministic.

Usage: ``python scripts/bench_samplers.py [--trials 100] [--repeats 5] [--out runs/bench_samplers]``
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import torch

from hptransfer.recipe import load_recipe
from hptransfer.training import train_spec
from hptransfer.tuning._samplers import make_sampler

LR = np.geomspace(1e-4, 3e-1, 15)
OUT_MULT = np.geomspace(0.03, 30.0, 9)


def landscape(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    recipe = load_recipe(Path(__file__).parent.parent / "recipes" / "mlp_quickstart.yaml")
    grid = np.full((len(LR), len(OUT_MULT)), np.nan)
    start = time.time()
    for i, lr in enumerate(LR):
        for j, om in enumerate(OUT_MULT):
            res = train_spec(recipe.at(64, {"lr": float(lr), "output_mult": float(om)}, seed=0))
            grid[i, j] = np.nan if res.diverged else res.val_loss
        print(f"lr {lr:.2e}: {np.round(grid[i], 3).tolist()}", flush=True)
    i, j = np.unravel_index(np.nanargmin(grid), grid.shape)
    best = {"lr": float(LR[i]), "output_mult": float(OUT_MULT[j])}
    seeds = [train_spec(recipe.at(64, best, seed=s)).val_loss for s in range(4)]
    loss = [[None if np.isnan(v) else v for v in row] for row in grid]
    data = {"noise_std": float(np.std(seeds, ddof=1)), "lr": LR.tolist(), "output_mult": OUT_MULT.tolist(),
            "loss": loss, "seconds": time.time() - start, "penalty": math.log(10)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


class Surrogate:
    """Bilinear interpolation of the grid in (log lr, log output_mult); NaN cells = diverged."""

    def __init__(self, data: dict):
        self.x, self.y = np.log(data["lr"]), np.log(data["output_mult"])
        self.z = np.array([[np.nan if v is None else v for v in row] for row in data["loss"]])
        self.penalty = data["penalty"]
        self.best = float(np.nanmin(self.z))

    def __call__(self, lr: float, om: float) -> float:
        x, y = math.log(lr), math.log(om)
        i = int(np.clip(np.searchsorted(self.x, x) - 1, 0, len(self.x) - 2))
        j = int(np.clip(np.searchsorted(self.y, y) - 1, 0, len(self.y) - 2))
        tx = (x - self.x[i]) / (self.x[i + 1] - self.x[i])
        ty = (y - self.y[j]) / (self.y[j + 1] - self.y[j])
        # Diverged if the nearest grid cell diverged.
        if np.isnan(self.z[i + round(tx), j + round(ty)]):
            return math.nan
        cell = self.z[i:i + 2, j:j + 2]
        fill = np.where(np.isnan(cell), self.penalty, cell)
        return float((1 - tx) * (1 - ty) * fill[0, 0] + tx * (1 - ty) * fill[1, 0] + (1 - tx) * ty * fill[0, 1]
                     + tx * ty * fill[1, 1])


def bench(sampler: str, f: Surrogate, trials: int, seed: int, dims: int,
          noise: float) -> tuple[list[float], int, float]:
    rng = np.random.default_rng(1000 + seed)

    def objective(trial: optuna.Trial) -> float:
        v = f(trial.suggest_float("lr", 1e-4, 3e-1, log=True), trial.suggest_float("output_mult", 0.03, 30.0, log=True))
        for k, opt in zip(range(dims - 2), (0.3, 5.0)):
            x = trial.suggest_float(f"extra{k}", 0.01, 100.0, log=True)
            v += 0.01 * math.log2(x / opt) ** 2
        div = math.isnan(v)
        trial.set_constraint("diverged", 1.0 if div else 0.0)
        trial.set_user_attr("diverged", div)
        trial.set_user_attr("true", v)
        return f.penalty if div else v + float(rng.normal(0.0, noise))

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(sampler=make_sampler(sampler, seed, startup=8))
    start = time.time()
    study.optimize(objective, n_trials=trials)
    best, pick, curve = math.inf, math.inf, []
    for t in study.trials:
        if not t.user_attrs["diverged"] and t.value < best:
            best, pick = t.value, t.user_attrs["true"]
        curve.append(pick - f.best)
    # Oracle regret: the best noise-free value among the points tried (where the sampler searched).
    oracle = min((t.user_attrs["true"] for t in study.trials if not t.user_attrs["diverged"]), default=math.inf)
    curve.append(oracle - f.best)
    return curve, sum(t.user_attrs["diverged"] for t in study.trials), time.time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--samplers", default="gp,tpe,random,qmc")
    ap.add_argument("--out", default="runs/bench_samplers")
    ap.add_argument("--dims", type=int, choices=(2, 3, 4), default=2, help="searched HPs (2 real + synthetic)")
    ap.add_argument("--noise", type=float, default=None, help="observation noise std (default: measured)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(logging.ERROR)
    out = Path(args.out)
    data = landscape(out / "landscape.json")
    f = Surrogate(data)
    n_div = sum(v is None for row in data["loss"] for v in row)
    noise = data["noise_std"] if args.noise is None else args.noise
    print(f"landscape: {len(LR)}x{len(OUT_MULT)} grid, best {f.best:.4f}, {n_div} diverged cells, "
          f"{data['seconds']:.0f}s to build; dims={args.dims}, noise std {noise:.4f}")
    rows = {}
    checkpoints = [c for c in (20, 50, 100) if c <= args.trials]
    for name in args.samplers.split(","):
        curves, divs, secs = [], [], []
        for r in range(args.repeats):
            c, d, s = bench(name, f, args.trials, seed=r, dims=args.dims, noise=noise)
            curves.append(c)
            divs.append(d)
            secs.append(s)
        med = {n: float(np.median([c[n - 1] for c in curves])) for n in checkpoints}
        med["oracle"] = float(np.median([c[-1] for c in curves]))
        rows[name] = {"median_regret": med, "diverged_median": float(np.median(divs)),
                      "seconds_per_study": float(np.mean(secs))}
        print(f"{name:7s} " + " ".join(f"regret@{n}={v:.4f}" for n, v in med.items() if n != "oracle")
              + f" oracle@{args.trials}={med['oracle']:.4f}"
              + f" diverged={np.median(divs):.0f}/{args.trials} time={np.mean(secs):.1f}s", flush=True)
    (out / f"results_dims{args.dims}_noise{noise:.3f}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
