"""Hugging Face mixtures of experts with default options: fused 3-D expert weights are hidden
matrices, routers (a raw ``gate.weight`` in Mixtral, an ``nn.Linear`` shared-expert gate in
Qwen2-MoE) are output weights read out in place, ``lm_head`` stays the hooked readout; μP passes
the coordinate check and SP fails it."""

from __future__ import annotations

import warnings

import pytest
import torch
from _helpers import charlm

transformers = pytest.importorskip("transformers")

import hptransfer as hpt  # noqa: E402
from hptransfer import hf  # noqa: E402
from hptransfer.errors import HPTransferWarning  # noqa: E402

transformers.logging.set_verbosity_error()
X = torch.randint(0, 256, (2, 16))
COMMON = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
          "num_experts_per_tok": 2, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 0,
          "pad_token_id": 0}


def mixtral():
    return transformers.MixtralForCausalLM, transformers.MixtralConfig(
        hidden_size=64, intermediate_size=128, num_local_experts=4, **COMMON)


def qwen2_moe():
    return transformers.Qwen2MoeForCausalLM, transformers.Qwen2MoeConfig(
        hidden_size=64, intermediate_size=128, moe_intermediate_size=64, shared_expert_intermediate_size=128,
        num_experts=4, **COMMON)


@pytest.mark.parametrize("arch", [mixtral, qwen2_moe])
def test_experts_are_hidden_routers_are_read_out_in_place_and_the_base_is_exact(arch):
    cls, config = arch()
    torch.manual_seed(0)
    plain = hf.config_factory(cls, config)(64)
    torch.manual_seed(0)
    same = hf.parametrize_config(cls, config, width=64, base_width=64, example_input=X)
    assert torch.equal(plain(X).logits, same(X).logits)
    table = hpt.scaling_table(hf.parametrize_config(cls, config, width=256, base_width=64, example_input=X))
    experts = [n for n in table.params if ".experts." in n and n.endswith(("gate_up_proj", "down_proj"))]
    assert experts and all(table.params[n].role == "hidden" and table.params[n].fan_in_mult == 4 for n in experts)
    routers = [n for n in table.params if n.endswith("gate.weight")]  # mlp.gate, mlp.shared_expert_gate
    assert routers and all(table.params[n].role == "output" and not table.params[n].readout_module for n in routers)
    assert [m.module for m in table.module_scalings] == ["lm_head"]
    lrs = {n: g["lr"] for g in hpt.param_groups(hf.parametrize_config(cls, config, width=256, base_width=64,
                                                                      example_input=X), lr=1.0)
           for n in g["param_names"]}
    assert all(lrs[n] == pytest.approx(1 / 4) for n in experts + routers)


@pytest.mark.slow  # about 30 s each on 2 cores
@pytest.mark.parametrize("arch", [mixtral, qwen2_moe])
@pytest.mark.parametrize("parametrization, passes", [("mup", True), ("sp", False)])
def test_moe_coord_check_default_options(arch, parametrization, passes):
    # Before: Mixtral's raw router stayed input-like and its logits grew as width^0.97 by step 4
    # (μP failed); Qwen2-MoE did not parametrize (ambiguous readout).
    cls, config = arch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HPTransferWarning)
        result = hpt.coord_check(hf.config_factory(cls, config), widths=(32, 64, 128, 256),
                                 parametrization=parametrization, task=charlm(), batch_size=8, seeds=(0, 1, 2, 3))
    assert result.passed is passes, result.failing[:3]


def test_a_meta_build_as_the_transfer_makes_gets_the_real_runs_roles():
    # target.yaml's optimizer groups come from a meta build; it used to run without the example input,
    # which left Mixtral's router input-like there (Adam LR x 1) while the real run read it out in place.
    from _helpers import ROOT

    from hptransfer.recipe import load_recipe
    from hptransfer.training import build

    recipe = load_recipe(ROOT / "recipes" / "hf_llama_tiny.yaml",
                         ["model.hf=mixtral", "model.config={hidden_size: 64, intermediate_size: 128, "
                          "num_local_experts: 4, num_experts_per_tok: 2, num_hidden_layers: 1, num_attention_heads: 4, "
                          "num_key_value_heads: 2, vocab_size: 256, max_position_embeddings: 32}"])
    spec = recipe.at(128, {"lr": 0.01})
    tables = [hpt.scaling_table(build(spec, device=d).model) for d in ("meta", None)]
    roles = [{n: (i.role, i.readout_module) for n, i in t.params.items()} for t in tables]
    assert roles[0] == roles[1] and roles[0]["model.layers.0.mlp.gate.weight"] == ("output", None)


def test_zero_readout_zeroes_the_readout_not_the_routers():
    # Zeroed, a router's logits tie and top-k sends every token to the same experts: the μP transfer
    # check of a Mixtral recipe (zero_readout: true) failed with the optimum LR moving +0.27 octave
    # per width doubling and wider-is-worse at width 128.
    cls, config = mixtral()
    model = hf.parametrize_config(cls, config, width=256, base_width=64, example_input=X, zero_readout=True)
    table = hpt.scaling_table(model)
    assert table.params["lm_head.weight"].zero_init and not model.lm_head.weight.any()
    assert not table.params["model.layers.0.mlp.gate.weight"].zero_init
    assert model.model.layers[0].mlp.gate.weight.abs().sum() > 0
