"""Why Gemma 2's coordinate check fails under μP: ablate one ingredient at a time.

Gemma 2 differs from Gemma (which passes) by a norm after each block's MLP and attention output,
logit soft-capping, and ``query_pre_attn_scalar``. This runs the μP coordinate check on a 2-layer
Gemma 2 from config (widths 64-512, seeds 0-1, 4 Adam steps at 1e-2, the defaults otherwise) as
built, without soft-capping, with untied embeddings, with Adam's epsilon at 1e-16, and with the
MLP's post-norm replaced by the identity, and prints the verdict and worst update slope of each.

    python scripts/postnorm_coord.py            # about 3 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch
import transformers

import hptransfer as hpt
from hptransfer import hf
from hptransfer.zoo import get_task


def _config() -> transformers.Gemma2Config:
    return transformers.Gemma2Config(
        hidden_size=32, intermediate_size=64, head_dim=8, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256, max_position_embeddings=16, bos_token_id=0, eos_token_id=0,
        pad_token_id=0, query_pre_attn_scalar=8)


def _factory(variant: str) -> Callable[[int], torch.nn.Module]:
    cfg = _config()
    if variant == "no soft-capping":
        cfg.final_logit_softcapping = cfg.attn_logit_softcapping = None
    base = hf.config_factory(transformers.Gemma2ForCausalLM, cfg,
                             width_fields=["hidden_size", "intermediate_size", "head_dim"])

    def make(width: int) -> torch.nn.Module:
        model = base(width)
        if variant == "MLP post-norm removed":
            for layer in model.model.layers:
                layer.post_feedforward_layernorm = torch.nn.Identity()
        if variant == "untied embeddings":
            model.config.tie_word_embeddings = False
            model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
        return model

    return make


class _AdamTinyEps(torch.optim.Adam):
    def __init__(self, params, lr: float = 1e-3, **kwargs) -> None:
        super().__init__(params, lr=lr, **{**kwargs, "eps": 1e-16})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="64,128,256,512")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    widths = [int(w) for w in args.widths.split(",")]
    task = get_task("charlm", block_size=16, n_bytes=200_000)
    print(f"Gemma 2, 2 layers, μP coordinate check, widths {widths}, seeds 0-1, Adam lr 1e-2, 4 steps")
    print("| variant | verdict | most negative update slope (module, step) |\n|---|---|---|")
    for variant in ("as built", "no soft-capping", "untied embeddings", "Adam eps 1e-16", "MLP post-norm removed"):
        opt = _AdamTinyEps if variant == "Adam eps 1e-16" else "adam"
        res = hpt.coord_check(_factory(variant), widths=widths, task=task, seeds=(0, 1), optimizer=opt)
        # the most negative update slope of a hidden-size output (fixed-size ones have their own bound)
        worst = min((s, m, t) for m, row in res.update_slopes.items() if m not in res.fixed_size
                    for t, s in enumerate(row) if t > 0 and s == s)
        print(f"| {variant} | {'pass' if res.passed else 'FAIL'} | {worst[0]:+.2f} ({worst[1]}, step {worst[2]}) |",
              flush=True)


if __name__ == "__main__":
    main()
