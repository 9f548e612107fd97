"""``hptransfer train TARGET.yaml``: train the target run from its file, in one process or under torchrun.

One process: ``hptransfer train runs/x/target.yaml``. Several (DDP; gloo on CPU, nccl on GPUs):
``torchrun --nproc-per-node 2 -m hptransfer train runs/x/target.yaml``; ``train.batch_size`` is the
global batch, split evenly over the processes, so the run matches the one-process run. Writes
``train_result.json`` next to the file (or in ``--out``); ``--checkpoint`` saves model, optimizer
and step, ``--resume`` continues from one. Exit 0 trained, 1 diverged, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._common import add_verbosity

__all__ = ["NAME", "HELP", "add_parser", "execute"]

NAME = "train"
HELP = "train the target from target.yaml (one process, or DDP under torchrun); checkpoints"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="TARGET", help="a target.yaml written by hptransfer transfer or run")
    p.add_argument("--out", default=None, help="folder for train_result.json (default: the target's folder)")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="schedule length (default: train.steps)")
    p.add_argument("--stop", type=int, default=None, metavar="K", help="stop after step K of the schedule")
    p.add_argument("--checkpoint", default=None, metavar="PATH", help="save model, optimizer and step here at the end")
    p.add_argument("--resume", default=None, metavar="PATH", help="continue from this checkpoint")
    p.add_argument("--fsdp", action="store_true",
                   help="shard parameters and optimizer state with FSDP2 (fully_shard) instead of DDP")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads per process (default 1)")
    add_verbosity(p)
    return p


def execute(args: argparse.Namespace) -> int:
    from ..errors import TrainingError
    from ..targets import train_target
    from ..training._build import torch_threads

    for name in ("steps", "stop", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TrainingError(f"--{name} must be >= 1, got {value}.")
    with torch_threads(args.threads):
        res = train_target(args.target, out=args.out, steps=args.steps, stop=args.stop, checkpoint=args.checkpoint,
                           resume=args.resume, fsdp=args.fsdp)
    if not args.quiet and int(os.environ.get("RANK", "0")) == 0:
        loss = "diverged" if res["val_loss"] is None else f"{res['val_loss']:.6f}"
        print(f"target width {res['width']}: validation loss {loss} after step {res['steps']} "
              f"({res['world_size']} process(es), global batch {res['global_batch']})")
    return 1 if res["diverged"] else 0
