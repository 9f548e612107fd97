"""Depth scaling without source edits on the models people train: nanoGPT-style blocks and the
Hugging Face GPT-2 and Llama blocks (issue 9, once the real-models work landed them)."""

from __future__ import annotations

import pytest
import torch
from _models import GPTConfig, NanoGPT

import hptransfer as hpt

TOKENS = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))


def nanogpt_wd(width: int, depth: int) -> NanoGPT:
    return NanoGPT(GPTConfig(n_embd=width, n_layer=depth, n_head=2, vocab_size=64, block_size=8))


def hf_gpt2(width: int, depth: int):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_embd=width, n_layer=depth, n_head=2, n_positions=8, vocab_size=64,
                                  attn_implementation="sdpa")
    return transformers.GPT2LMHeadModel(cfg)


def hf_llama(width: int, depth: int):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=depth,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=width // 4,
                                   vocab_size=64, max_position_embeddings=8, attn_implementation="sdpa")
    return transformers.LlamaForCausalLM(cfg)


CASES = [
    (nanogpt_wd, "transformer.h", ("attn", "mlp")),
    (hf_gpt2, "transformer.h", ("attn", "mlp")),
    (hf_llama, "model.layers", ("self_attn", "mlp")),
]


def _build(factory, p, depth, base_depth=2):
    torch.manual_seed(0)
    return hpt.parametrize(factory, width=32, base_width=16, depth=depth, base_depth=base_depth, parametrization=p,
                           example_input=TOKENS)


def _logits(out):
    return out if isinstance(out, torch.Tensor) else out.logits


@pytest.mark.parametrize(("factory", "stack", "branches"), CASES, ids=["nanogpt", "hf-gpt2", "hf-llama"])
def test_stack_and_each_residual_branch_are_found_and_scaled(factory, stack, branches) -> None:
    depth = 4
    model = _build(factory, "completep", depth)
    t = hpt.scaling_table(model)
    assert t.depth["stacks"] == [stack]
    assert t.depth["branches"] == [f"{stack}.{i}.{b}" for i in range(depth) for b in branches]
    mults = [ms.multiplier for ms in t.module_scalings if ms.kind == "output"]
    assert mults == [pytest.approx(2 / depth)] * (depth * len(branches))  # (L_base / L)^1


@pytest.mark.parametrize(("factory", "stack", "branches"), CASES, ids=["nanogpt", "hf-gpt2", "hf-llama"])
def test_at_base_depth_completep_is_mup_exactly(factory, stack, branches) -> None:
    outs = []
    for p in ("mup", "completep"):
        model = _build(factory, p, depth=2)
        outs.append(_logits(model(TOKENS)))
    assert torch.equal(outs[0], outs[1])
