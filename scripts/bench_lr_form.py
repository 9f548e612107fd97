"""How exactly ``lr_form="multipliers"`` reproduces the groups form (``docs/parametrization.md``).

    python scripts/bench_lr_form.py                 # writes docs/bench/lr_form/results.{json,md}
    python scripts/bench_lr_form.py --steps 20 --out /tmp/lr_form

Each row trains the reference GPT (2 blocks, vocab 64, 16 tokens, batch 8, seed 0, the same batches)
for ``--steps`` optimizer steps at LR 3e-3, three ways:

* **groups**: ``parametrize(lr_form="groups")`` with ``hptransfer.optimizer`` (the reference);
* **mult + hpt groups**: ``lr_form="multipliers"`` with ``hptransfer.optimizer`` (its groups carry the
  per-tensor epsilon and weight decay that keep the two forms equal);
* **mult + one LR**: ``lr_form="multipliers"`` with ``cls(model.parameters(), lr=...)``, what a
  framework's default optimizer does; with the same optimizer epsilon, and once more with epsilon
  1e-12 in both forms (a gap that shrinks with it is the epsilon's), and once with gradient-norm
  clipping at 0.1 in both forms.

Columns give the largest absolute difference of the training loss from the groups form over all
steps; "SP" gives the same for an SP model (one LR, the factory's init), for scale. A width
multiplier of 4 makes every factor a power of two, so float rounding is exact; 3 shows round-off.

A second table runs the models of ``scripts/model_zoo.py`` (nanoGPT-style, torch's Transformer
tutorial, ResNet, timm-style ViT, Hugging Face GPT-2, Llama, Gemma, BERT, ViT, Mixtral, Qwen2-MoE)
at width 128 from base 32 on their built-in task, 10 AdamW steps at LR 1e-3, weight decay 0.1, batch 8: one LR on the
folded model against ``hptransfer.optimizer`` on the groups form, or the refusal.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import machine

import hptransfer as hpt
from hptransfer.models import gpt

LR = 3e-3
ROWS: list[dict[str, Any]] = [
    {"rule": "mup", "width": 128, "opt": "AdamW", "wd": 0.0},
    {"rule": "mup", "width": 128, "opt": "AdamW", "wd": 0.1},
    {"rule": "mup", "width": 96, "opt": "AdamW", "wd": 0.0},
    {"rule": "mup", "width": 96, "opt": "AdamW", "wd": 0.1},
    {"rule": "mup", "width": 96, "opt": "Adam", "wd": 0.0},
    {"rule": "mup", "width": 96, "opt": "Adam", "wd": 0.1},
    {"rule": "mup", "width": 96, "opt": "SGD", "wd": 0.0},
    {"rule": "depth-mup", "width": 96, "depth": 4, "opt": "AdamW", "wd": 0.0},
    {"rule": "depth-mup", "width": 96, "depth": 4, "opt": "AdamW", "wd": 0.1},
]


def _factory(width: float, depth: int = 2) -> torch.nn.Module:
    return gpt(int(width), vocab_size=64, block_size=16, n_layer=depth)


def _losses(row: dict[str, Any], form: str, *, one_lr: bool, steps: int, eps: float | None = None,
            clip: float | None = None, rule: str | None = None) -> torch.Tensor:
    torch.manual_seed(0)
    depth = row.get("depth")
    data = torch.randint(0, 64, (steps, 8, 17), generator=torch.Generator().manual_seed(1))
    kwargs: dict[str, Any] = {} if depth is None else {"depth": depth, "base_depth": 2,
                                                       "example_input": data[0, :, :-1]}
    model = hpt.parametrize(_factory, width=row["width"], base_width=32, parametrization=rule or row["rule"],
                            lr_form=form, **kwargs)
    cls = getattr(torch.optim, row["opt"])
    extra: dict[str, Any] = {} if eps is None or row["opt"] == "SGD" else {"eps": eps}
    lr = LR * (30 if row["opt"] == "SGD" else 1)
    opt = cls(model.parameters(), lr=lr, weight_decay=row["wd"], **extra) if one_lr else \
        hpt.optimizer(model, cls, lr=lr, weight_decay=row["wd"], **extra)
    out = []
    for s in range(steps):
        x, y = data[s, :, :-1], data[s, :, 1:]
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.append(loss.item())
    return torch.tensor(out, dtype=torch.float64)


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def measure(row: dict[str, Any], steps: int) -> dict[str, Any]:
    ref = _losses(row, "groups", one_lr=False, steps=steps)
    out = {**row, "final_loss": float(ref[-1]),
           "mult_hpt_groups": _gap(_losses(row, "multipliers", one_lr=False, steps=steps), ref)}
    try:
        out["mult_one_lr"] = _gap(_losses(row, "multipliers", one_lr=True, steps=steps), ref)
    except hpt.OptimizerConfigError as e:  # SGD: the LR guard stops a one-LR SGD on a folded model
        out["mult_one_lr"] = f"refused ({type(e).__name__} at the first step)"
    if row["opt"] != "SGD":
        tiny = _losses(row, "groups", one_lr=False, steps=steps, eps=1e-12)
        out["mult_one_lr_eps1e-12"] = _gap(_losses(row, "multipliers", one_lr=True, steps=steps, eps=1e-12), tiny)
        clipped = _losses(row, "groups", one_lr=False, steps=steps, clip=0.1)
        out["mult_one_lr_clip0.1"] = _gap(_losses(row, "multipliers", one_lr=True, steps=steps, clip=0.1), clipped)
    out["sp"] = _gap(_losses(row, "groups", one_lr=True, steps=steps, rule="sp"), ref)
    return out


def _zoo_losses(model: torch.nn.Module, opt: torch.optim.Optimizer, task: Any, steps: int = 10) -> torch.Tensor:
    from hptransfer.zoo._task_base import as_logits

    out = []
    for s in range(steps):
        x, y = task.batch(s, 8)
        loss = task.loss(as_logits(model(x)), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append(loss.item())
    return torch.tensor(out, dtype=torch.float64)


def measure_zoo() -> list[dict[str, Any]]:
    """The model-zoo table: folded tensors, one-LR gap, SP gap, or the refusal (first sentence)."""
    from model_zoo import _task, models

    rows = []
    for name, (factory, task_name) in models().items():
        task, row = _task(task_name), {"model": name}
        try:
            torch.manual_seed(0)
            folded = hpt.parametrize(factory, width=128, base_width=32, lr_form="multipliers")
        except hpt.HPTransferError as e:
            rows.append({**row, "refused": str(e).split(": it ")[-1].split(". Fix")[0]})
            continue
        row["folded"] = sum(i.lr_folded != 1.0 for i in hpt.scaling_table(folded))
        torch.manual_seed(0)
        ref = hpt.parametrize(factory, width=128, base_width=32)
        torch.manual_seed(1)
        want = _zoo_losses(ref, hpt.optimizer(ref, torch.optim.AdamW, lr=1e-3, weight_decay=0.1), task)
        torch.manual_seed(1)
        one_lr = torch.optim.AdamW(folded.parameters(), lr=1e-3, weight_decay=0.1)
        row["one_lr"] = _gap(_zoo_losses(folded, one_lr, task), want)
        torch.manual_seed(0)
        sp = hpt.parametrize(factory, width=128, base_width=32, parametrization="sp")
        torch.manual_seed(1)
        row["sp"] = _gap(_zoo_losses(sp, torch.optim.AdamW(sp.parameters(), lr=1e-3, weight_decay=0.1), task), want)
        rows.append(row)
        print(row, flush=True)
    return rows


def _cell(v: Any) -> str:
    return f"{v:.1e}" if isinstance(v, float) else ("--" if v is None else str(v))


def report(results: dict[str, Any]) -> str:
    cols = ["mult_hpt_groups", "mult_one_lr", "mult_one_lr_eps1e-12", "mult_one_lr_clip0.1", "sp"]
    lines = [f"# lr_form: multipliers against groups ({results['steps']} steps, max |loss difference|)", "",
             f"Machine: {results['machine']}. Date: {results['date']}. Command: `{results['command']}`.", "",
             "| rule | width (base 32) | optimizer | wd | final loss (groups) | mult + hpt groups | mult + one LR | "
             "one LR, eps 1e-12 | one LR, clip 0.1 | SP (scale) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        depth = f", depth {r['depth']} (base 2)" if r.get("depth") else ""
        lines.append(f"| {r['rule']} | {r['width']}{depth} | {r['opt']} | {r['wd']} | {r['final_loss']:.4f} | "
                     + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    if results.get("zoo"):
        lines += ["", "Models people train (width 128, base 32, 10 AdamW steps at LR 1e-3, wd 0.1, max |loss "
                  "difference| from `hptransfer.optimizer` on the groups form):", "",
                  "| model | tensors folded | one LR on the folded model | SP (scale) |", "|---|---|---|---|"]
        for z in results["zoo"]:
            lines.append(f"| {z['model']} | refused: it {z['refused']} | -- | -- |" if "refused" in z else
                         f"| {z['model']} | {z['folded']} | {z['one_lr']:.1e} | {z['sp']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("docs/bench/lr_form"))
    ap.add_argument("--no-zoo", action="store_true", help="skip the model-zoo table")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for row in ROWS:
        rows.append(measure(row, args.steps))
        print(report({"rows": rows[-1:], "steps": args.steps, "machine": "", "date": "", "command": ""})
              .splitlines()[-1], flush=True)
    zoo = [] if args.no_zoo else measure_zoo()
    results = {"rows": rows, "zoo": zoo, "steps": args.steps, "machine": machine(),
               "date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
