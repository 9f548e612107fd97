"""Coordinate checks on Hugging Face architectures built the way a recipe builds them.

Each architecture is built by ``hptransfer.hf.hf_factory`` from a small config (2 layers, 4 heads,
hidden 32 at the base width, FFN 2x, byte vocabulary), with the width fields it knows
(``hf.WIDTH_FIELDS``), and checked under μP and SP with default options: widths 32-256, seeds 0-1,
4 Adam steps at 1e-2 on the byte LM (the settings of ``scripts/model_zoo.py``).

OLMo 2 puts a norm after each attention and MLP output and none before (like Gemma 2's
post-norms, docs/parametrization.md). For it the script also prints, from base widths 32 and 128,
the activation slope of each MLP's raw output and of the post-norm after it: what the residual
stream receives is the normalised output.

    python scripts/hf_coord_sweep.py            # about 3 minutes on 2 CPU cores
    python scripts/hf_coord_sweep.py --out docs/hf_coord_sweep.md
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from pathlib import Path

import torch

import hptransfer as hpt
from hptransfer.hf import hf_factory
from hptransfer.zoo import get_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import machine

ARCHS = ("phi", "phi3", "gpt_neox", "starcoder2", "olmo", "olmo2", "cohere", "stablelm", "granite",
         # added 2026-12-06: encoders (masked-LM class) and older decoders, each with its own field names
         "roberta", "xlm-roberta", "distilbert", "electra", "deberta-v2", "modernbert", "falcon", "bloom", "gptj",
         "gpt_bigcode",
         # added 2026-12-06 (ninth session): an MoE whose FFN sizes sit in a sub-config (dotted width fields)
         "dbrx")

#: Field names that differ from Llama's, per architecture (width 32, FFN 2x, 2 layers, 4 heads).
_OWN_FIELDS: dict[str, dict] = {
    "distilbert": {"dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 4},
    "electra": {"embedding_size": 32},
    "deberta-v2": {"pooler_hidden_size": 32},
    "modernbert": {"global_attn_every_n_layers": 1, "local_attention": 16},
    "falcon": {"ffn_hidden_size": 64, "num_kv_heads": 4, "new_decoder_architecture": True},
    "bloom": {"n_head": 4, "n_layer": 2},
    "gptj": {"n_embd": 32, "n_head": 4, "n_layer": 2, "rotary_dim": 4},
    "gpt_bigcode": {"n_embd": 32, "n_head": 4, "n_layer": 2},
    # clip_qkv set: transformers 5.25's DBRX forward fails with clip_qkv None
    # d_model, not hidden_size: DbrxConfig copies only d_model into ffn_config.hidden_size
    "dbrx": {"d_model": 32, "n_heads": 4, "n_layers": 2, "max_seq_len": 32,
             "ffn_config": {"ffn_hidden_size": 64, "moe_num_experts": 4, "moe_top_k": 2},
             "attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0}},
}


def config(arch: str, width: int) -> dict:
    own = {k: v * width // 32 if k in ("dim", "d_model", "hidden_dim", "ffn_hidden_size", "n_embd", "embedding_size",
                                       "pooler_hidden_size") else v for k, v in _OWN_FIELDS.get(arch, {}).items()}
    common = {"hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 32, "bos_token_id": 0,
              "eos_token_id": 0, "pad_token_id": 0}
    if "n_layer" in own or "n_layers" in own:  # these configs name layers and heads their own way
        common = {k: v for k, v in common.items() if k not in ("num_hidden_layers", "num_attention_heads")}
    if "d_model" in own:
        common.pop("hidden_size")
    return {**common, **own}


def check(arch: str, widths: tuple[int, ...], parametrization: str, task: object) -> hpt.CoordCheckResult:
    factory = hf_factory(arch, config(arch, widths[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hpt.coord_check(factory, widths=widths, parametrization=parametrization, task=task, batch_size=8,
                               steps=4, seeds=(0, 1))


def worst(r: hpt.CoordCheckResult) -> str:
    if not r.failing:
        return "pass"
    module, step, kind, slope = r.failing[0]
    return f"FAIL ({module}, {kind} slope {slope:+.2f} at step {step})"


def setup(doc: str) -> tuple[argparse.Namespace, object, float]:
    """The command line (``--out``), one torch thread, the byte-LM task and the start time of a sweep."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    args = p.parse_args()
    torch.set_num_threads(1)
    return args, get_task("charlm", block_size=16, n_bytes=200_000), time.perf_counter()


def finish(lines: list[str], t0: float, out: Path | None) -> None:
    """Close the Markdown with the run time, print it, and write it to ``out``."""
    lines += ["", f"{(time.perf_counter() - t0) / 60:.1f} min."]
    print("\n".join(lines))
    if out:
        out.write_text("\n".join(lines) + "\n")


def main() -> None:
    args, task, t0 = setup(__doc__)
    lines = [f"# Coordinate checks on more Hugging Face architectures ({datetime.date.today().isoformat()})", "",
             f"`python scripts/hf_coord_sweep.py`; {machine()}. Widths 32-256, seeds 0-1, 4 Adam steps at 1e-2, "
             "the byte LM; each model built from config by `hptransfer.hf.hf_factory` with its known width fields.",
             "", "| architecture | μP | SP |", "|---|---|---|"]
    for arch in ARCHS:
        mup, sp = (check(arch, (32, 64, 128, 256), par, task) for par in ("mup", "sp"))
        lines.append(f"| {arch} | {worst(mup)} | {worst(sp)} |")
        print(lines[-1], flush=True)
    lines += ["", "OLMo 2 under μP: slope per width doubling of mean |h| (act) and mean |h_t - h_0| (upd) of each "
              "MLP's raw output and of the norm after it, at steps 0-4.", "",
              "| widths | module | stat | step 0 | 1 | 2 | 3 | 4 |", "|---|---|---|---|---|---|---|---|"]
    for widths in ((32, 64, 128, 256), (128, 256, 512, 1024)):
        r = check("olmo2", widths, "mup", task)
        lines.append(f"| {widths[0]}-{widths[-1]} | (verdict) | | {worst(r)} | | | | |")
        for module in (m for m in r.modules if m.endswith(".mlp") or m.endswith("post_feedforward_layernorm")):
            for stat, slopes in (("act", r.slopes[module]), ("upd", r.update_slopes[module])):
                cells = " | ".join("-" if s != s else f"{s:+.2f}" for s in slopes)
                lines.append(f"| {widths[0]}-{widths[-1]} | {module} | {stat} | {cells} |")
                print(lines[-1], flush=True)
    finish(lines, t0, args.out)


if __name__ == "__main__":
    main()
