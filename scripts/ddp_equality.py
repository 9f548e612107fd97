"""One process vs 2-process DDP vs 2-process FSDP2 on the same target.yaml and global batch (CPU, gloo).

Tunes a tiny MLP recipe (3 random trials), transfers to width ``--width``, then trains the target
with ``hptransfer train`` three ways and reports the final validation loss of each and the largest
per-step training-loss difference from the one-process run. Writes ``docs/bench/ddp.{json,md}``.

Usage: ``python scripts/ddp_equality.py [--steps 100] [--width 128] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _hpt(*args: str, nproc: int = 1) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    pre = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)] if nproc > 1 else \
        [sys.executable]
    subprocess.run([*pre, "-m", "hptransfer", *args], check=True, env=env, capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="30 steps at width 64")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench"))
    args = ap.parse_args()
    steps, width = (30, 64) if args.quick else (args.steps, args.width)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        recipe = {"name": "ddp", "model": {"name": "mlp"},
                  "task": {"name": "classification", "kwargs": {"n_train": 2048, "n_val": 512}},
                  "train": {"batch_size": 64, "steps": steps}, "widths": {"proxy": 16, "target": width},
                  "search": {"lr": {"type": "log_float", "low": 3e-3, "high": 3e-2}},
                  "tune": {"trials": 3, "sampler": "random"}}
        (t / "r.yaml").write_text(yaml.safe_dump(recipe))
        _hpt("tune", str(t / "r.yaml"), "--out", str(t / "run"), "-q")
        _hpt("transfer", str(t / "r.yaml"), "--out", str(t / "run"), "-q")
        target = str(t / "run" / "target.yaml")
        runs = {}
        for name, nproc, extra in (("one process", 1, []), ("DDP x2", 2, []), ("FSDP2 x2", 2, ["--fsdp"])):
            folder = t / name.replace(" ", "_")
            _hpt("train", target, "--out", str(folder), "-q", *extra, nproc=nproc)
            runs[name] = json.loads((folder / "train_result.json").read_text())
    base = runs["one process"]
    rows = [{"run": k, "processes": r["world_size"], "global_batch": r["global_batch"], "val_loss": r["val_loss"],
             "val_loss_diff": r["val_loss"] - base["val_loss"],
             "max_step_loss_diff": max(abs(a - b) for a, b in zip(r["losses"], base["losses"]))}
            for k, r in runs.items()]
    command = "python scripts/ddp_equality.py" + (" --quick" if args.quick else f" --steps {steps} --width {width}")
    out = Path(args.out)
    (out / "ddp.json").write_text(json.dumps({"command": command, "steps": steps, "width": width, "runs": rows},
                                             indent=1) + "\n")
    lines = [f"# One process vs DDP vs FSDP2 (CPU, gloo)\n\n`{command}`: MLP width {width}, {steps} steps, global "
             "batch 64, the same target.yaml.\n", "| run | processes | validation loss | difference | largest "
             "per-step loss difference |", "|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['processes']} | {r['val_loss']:.7f} | {r['val_loss_diff']:+.1e} | "
              f"{r['max_step_loss_diff']:.1e} |" for r in rows]
    (out / "ddp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
