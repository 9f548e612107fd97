"""Hugging Face mixtures of experts with default options: fused 3-D expert weights are hidden
matrices, routers (a raw ``gate.weight`` in Mixtral, an ``nn.Linear`` shared-expert gate in
Qwen2-MoE) are output weights read out in place, ``lm_head`` stays the hooked readout; μP passes
the coordinate check and SP fails it."""

from __future__ import annotations

import pytest
import torch
from _helpers import charlm, hpt_warns

transformers = pytest.importorskip("transformers")

import hptransfer as hpt  # noqa: E402
from hptransfer import hf  # noqa: E402

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


def dbrx_config(width: int = 32) -> dict:
    return {"d_model": width, "n_heads": 4, "n_layers": 2, "max_seq_len": 32, "vocab_size": 256,
            "ffn_config": {"ffn_hidden_size": 2 * width, "moe_num_experts": 4, "moe_top_k": 2},
            "attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0}}


def test_dbrx_scales_the_ffn_sizes_held_in_its_sub_config():
    # Before: the FFN's sizes live in ffn_config, which no width field could name, so at width 64
    # the experts and router kept 32 inputs and the forward failed.
    factory = hf.hf_factory("dbrx", dbrx_config())
    assert factory.fields == ("d_model", "ffn_config.hidden_size", "ffn_config.ffn_hidden_size")
    model = hpt.parametrize(factory, width=64, base_width=32, example_input=X)
    ffn = model.transformer.blocks[0].ffn
    assert ffn.router.layer.weight.shape == (4, 64) and ffn.experts.mlp.w1.shape == (4 * 128, 64)
    assert factory.config.ffn_config.ffn_hidden_size == 64  # the factory's own config is not changed
    assert model(X).logits.shape == (2, 16, 256)


@pytest.mark.slow  # about 8 s each on 2 cores
@pytest.mark.parametrize("parametrization, passes", [("mup", True), ("sp", False)])
def test_dbrx_coord_check_default_options(parametrization, passes):
    # DBRX applies one expert module to each expert's weights in turn: those calls are judged
    # through their sum (coord/_analysis.py), and the routers are read out in place. Over 32-128
    # only, μP's expert sum reaches the +0.35 bound at step 2 (4 seeds); over 32-256 and 64-512 it passes.
    result = hpt.coord_check(hf.hf_factory("dbrx", dbrx_config()), widths=(32, 64, 128, 256),
                             parametrization=parametrization, task=charlm(), batch_size=8, seeds=(0, 1, 2, 3))
    assert result.passed is passes, result.failing[:3]


def test_width_inference_reaches_into_sub_configs_and_names_what_stays():
    # A config hptransfer has no entry for: sizes in a sub-config of the same width follow it (dotted
    # paths); a sub-config of another size (a vision tower) stays and the warning lists its sizes.
    dbrx = transformers.AutoConfig.for_model("dbrx", **dbrx_config())
    with hpt_warns(r"d_model is the width and ffn_config.hidden_size, "
                                               r"ffn_config.ffn_hidden_size scale"):
        assert hf.infer_width_fields(dbrx) == ("d_model", "ffn_config.hidden_size", "ffn_config.ffn_hidden_size")
    llava = transformers.AutoConfig.for_model(
        "llava", text_config={"model_type": "llama", "hidden_size": 64, "intermediate_size": 128},
        vision_config={"model_type": "clip_vision_model", "hidden_size": 48, "intermediate_size": 96})
    with hpt_warns(r"vision_config.hidden_size=48, .*vision_config.intermediate_size=96"):
        fields = hf.infer_width_fields(llava)
    assert fields[:2] == ("text_config.hidden_size", "text_config.intermediate_size")
    assert not any(f.startswith("vision_config") for f in fields)
