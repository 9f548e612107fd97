"""Coordinate checks of Hugging Face mixtures of experts at two learning rates and two base widths.

Each model is built from config by ``hptransfer.hf.hf_factory`` (2 layers, 4 heads, 4 experts, top-2,
expert FFN twice the width) and checked under μP with default options: 4 Adam steps, seeds 0-3, the
byte LM, at LR 5e-3 and 1e-2 (the check's default), from base widths 32 (widths 32-256) and 64
(64-512). The SP column is at 1e-2 from base 32.

Then Qwen3-MoE variants at base 64 and LR 1e-2: renormalised top-2 weights, top-1, 8 experts, dense.

    python scripts/moe_coord_lr.py --out docs/moe_coord_lr.md     # about 5 minutes on 2 CPU cores
"""

from __future__ import annotations

import datetime
import sys
import warnings
from pathlib import Path

import hptransfer as hpt
from hptransfer.hf import hf_factory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import machine
from hf_coord_sweep import finish, setup, worst

ARCHS = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "dbrx")


#: (label, architecture, config change) of the Qwen3-MoE variants run at base 64 and LR 1e-2.
VARIANTS = (("as above (top-2, routing weights not renormalised)", "qwen3_moe", {}),
            ("norm_topk_prob: true (top-2 weights renormalised to sum 1, as Mixtral's)", "qwen3_moe",
             {"norm_topk_prob": True}),
            ("top-1 routing", "qwen3_moe", {"num_experts_per_tok": 1}),
            ("8 experts", "qwen3_moe", {"num_experts": 8}),
            ("dense Qwen3 of the same size", "qwen3", {}))


def config(arch: str, base: int) -> dict:
    if arch == "dbrx":  # d_model: DbrxConfig copies only d_model into ffn_config.hidden_size
        return {"d_model": base, "n_heads": 4, "n_layers": 2, "max_seq_len": 32, "vocab_size": 256,
                "ffn_config": {"ffn_hidden_size": 2 * base, "moe_num_experts": 4, "moe_top_k": 2},
                "attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0}}
    experts = {"mixtral": {"num_local_experts": 4}, "qwen2_moe": {
        "num_experts": 4, "moe_intermediate_size": 2 * base, "shared_expert_intermediate_size": 2 * base},
        "qwen3_moe": {"num_experts": 4, "moe_intermediate_size": 2 * base, "head_dim": base // 4},
        "qwen3": {"head_dim": base // 4},
        "olmoe": {"num_experts": 4}}[arch]
    return {"hidden_size": base, "intermediate_size": 2 * base, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 32, "bos_token_id": 0,
            "eos_token_id": 0, "pad_token_id": 0, "num_experts_per_tok": 2, **experts}


def verdict(arch: str, base: int, lr: float, parametrization: str, task: object) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = hpt.coord_check(hf_factory(arch, config(arch, base)), widths=tuple(base * 2 ** k for k in range(4)),
                            parametrization=parametrization, task=task, batch_size=8, seeds=(0, 1, 2, 3), lr=lr)
    return worst(r)


def main() -> None:
    args, task, t0 = setup(__doc__)
    lines = [f"# Mixtures of experts: μP coordinate check at two LRs ({datetime.date.today().isoformat()})", "",
             f"`python scripts/moe_coord_lr.py`; {machine()}. {__doc__.splitlines()[2].strip()} "
             + " ".join(line.strip() for line in __doc__.splitlines()[3:6]), "",
             "| model | μP, base 32, LR 5e-3 | μP, base 32, LR 1e-2 | μP, base 64, LR 5e-3 | μP, base 64, LR 1e-2 "
             "| SP, base 32, LR 1e-2 |", "|---|---|---|---|---|---|"]
    for arch in ARCHS:
        cells = [verdict(arch, base, lr, "mup", task) for base in (32, 64) for lr in (5e-3, 1e-2)]
        cells.append(verdict(arch, 32, 1e-2, "sp", task))
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    lines += ["", "Qwen3-MoE variants, μP, base 64, LR 1e-2 (what the failing column depends on):", "",
              "| variant | verdict |", "|---|---|"]
    for name, arch, change in VARIANTS:
        cfg = {**config(arch, 64), **change}
        if arch == "qwen3":  # the dense model of the same size
            cfg = {k: v for k, v in cfg.items() if k not in ("num_experts", "moe_intermediate_size")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = hpt.coord_check(hf_factory(arch, cfg), widths=(64, 128, 256, 512), task=task, batch_size=8,
                                seeds=(0, 1, 2, 3))
        lines.append(f"| {name} | {worst(r)} |")
        print(lines[-1], flush=True)
    finish(lines, t0, args.out)


if __name__ == "__main__":
    main()
