"""Step-time overhead of hptransfer's rewrite: μP GPT vs the same GPT in plain SP.

"Plain" is ``factory(width)`` trained with ``torch.optim.AdamW(model.parameters())``: no
hooks, one parameter group. "Parametrized" is ``hptransfer.parametrize(..., "mup")`` at 4x the
base width (readout hook and attention rewriting active) with ``hptransfer.param_groups``.
Both start from the same weights and see the same batches. Steps are timed in alternating
blocks inside one process, so machine noise hits both alike; the ratio reported is the
median over blocks of (parametrized block time / plain block time), eager and compiled.

    python scripts/bench_overhead.py            # defaults: width 256, 4 layers, 30 rounds
    python scripts/bench_overhead.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time
from datetime import date

import torch

import hptransfer as hpt
from hptransfer.models import gpt
from hptransfer.tasks import CharLMTask


def _step_fn(model, opt, task, batch_size):
    def step(i: int) -> None:
        x, y = task.batch(i, batch_size)
        loss = task.loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _pair(width: int, base: int, n_layer: int, compile_: bool, task: CharLMTask, batch_size: int):
    factory = functools.partial(gpt, n_layer=n_layer, **task.model_kwargs())
    torch.manual_seed(0)
    ours = hpt.parametrize(factory, width=width, base_width=base, example_input=task.example_input())
    plain = factory(width)
    plain.load_state_dict(ours.state_dict())
    our_opt = hpt.optimizer(ours, torch.optim.AdamW, lr=1e-3, weight_decay=0.1)
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-3, weight_decay=0.1)
    if compile_:
        ours, plain = torch.compile(ours), torch.compile(plain)
    return _step_fn(plain, plain_opt, task, batch_size), _step_fn(ours, our_opt, task, batch_size)


def measure(compile_: bool, args: argparse.Namespace, task: CharLMTask) -> dict[str, float]:
    plain, ours = _pair(args.width, args.width // 4, args.n_layer, compile_, task, args.batch_size)
    for i in range(args.warmup):  # includes compilation
        plain(i)
        ours(i)
    ratios, t_plain, t_ours = [], [], []
    step = 0
    for r in range(args.rounds):
        order = (plain, ours) if r % 2 == 0 else (ours, plain)  # alternate who goes first
        times = {}
        for fn in order:
            t0 = time.perf_counter()
            for _ in range(args.block):
                fn(step)
                step += 1
            times[fn] = time.perf_counter() - t0
        ratios.append(times[ours] / times[plain])
        t_plain.append(times[plain] / args.block)
        t_ours.append(times[ours] / args.block)
    q = statistics.quantiles(ratios, n=4)
    return {
        "ratio_median": statistics.median(ratios),
        "ratio_q1": q[0],
        "ratio_q3": q[2],
        "plain_ms": 1000 * statistics.median(t_plain),
        "ours_ms": 1000 * statistics.median(t_ours),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--block", type=int, default=5, help="steps per timed block")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--modes", default="eager,compiled")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.width, args.n_layer, args.rounds, args.block, args.warmup = 64, 1, 4, 2, 2
    task = CharLMTask()
    print(f"# hptransfer step overhead, {date.today()}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"# GPT width={args.width} (base {args.width // 4}), n_layer={args.n_layer}, "
          f"batch={args.batch_size}x{task.block_size} tokens, {args.rounds} rounds x {args.block} steps, AdamW")
    print(f"{'mode':9s} {'plain ms/step':>14s} {'μP ms/step':>11s} {'ratio (median)':>15s} {'IQR':>15s}")
    for mode in args.modes.split(","):
        r = measure(mode == "compiled", args, task)
        print(f"{mode:9s} {r['plain_ms']:14.2f} {r['ours_ms']:11.2f} {r['ratio_median']:15.4f} "
              f"{r['ratio_q1']:7.4f}-{r['ratio_q3']:.4f}", flush=True)


if __name__ == "__main__":
    main()
