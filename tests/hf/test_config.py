"""Hugging Face models from a config with default options: exact at the base width, 1/m hidden
LRs, μP coordinate check passes and SP fails, eager attention reported and caught, and
checkpoints that keep the table. Skipped when transformers is absent (CI installs the extra)."""

from __future__ import annotations

import warnings

import pytest
import torch
from _helpers import charlm

transformers = pytest.importorskip("transformers")

import hptransfer as hpt  # noqa: E402
from hptransfer import hf  # noqa: E402
from hptransfer.errors import FactoryError, HPTransferWarning, ParametrizationError  # noqa: E402

transformers.logging.set_verbosity_error()
X = torch.randint(0, 256, (2, 16))
SPECIAL = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}


def gpt2_config(impl: str = "sdpa"):
    c = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=256, n_positions=16, resid_pdrop=0.0,
                                embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    c._attn_implementation = impl
    return c


def llama_config():
    c = transformers.LlamaConfig(hidden_size=64, intermediate_size=176, head_dim=16, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                                 max_position_embeddings=16, **SPECIAL)
    c._attn_implementation = "sdpa"
    return c


def bert_config():
    return transformers.BertConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                                   vocab_size=256, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0, pad_token_id=0)


def vit_config():
    return transformers.ViTConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=8, patch_size=4, num_channels=3, num_labels=5, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)


MODELS = {
    "gpt2": (transformers.GPT2LMHeadModel, gpt2_config, X),
    "llama": (transformers.LlamaForCausalLM, llama_config, X),
    "bert": (transformers.BertForMaskedLM, bert_config, X),
    "vit": (transformers.ViTForImageClassification, vit_config, torch.randn(2, 3, 8, 8)),
}


def _logits(model, x):
    return model(x).logits


@pytest.mark.parametrize("name", sorted(MODELS))
def test_default_options_exact_at_base_width_and_one_over_m_hidden_lr(name):
    cls, config, x = MODELS[name]
    factory = hf.config_factory(cls, config())
    torch.manual_seed(0)
    plain = factory(32)
    torch.manual_seed(0)
    mu = hf.parametrize_config(cls, config(), width=32, base_width=32)
    assert torch.equal(_logits(plain, x), _logits(mu, x))
    wide = hf.parametrize_config(cls, config(), width=128, base_width=32, example_input=x)
    table = hpt.scaling_table(wide)
    hidden = table.by_role("hidden")
    assert hidden and {table.params[n].init_class for n in hidden} == {"constant"}  # HF's N(0, 0.02^2)
    lrs = {n: g["lr"] for g in hpt.param_groups(wide, lr=1.0) for n in g["param_names"]}
    assert all(lrs[n] == pytest.approx(1 / 4) for n in hidden)
    assert table.attention and all(f == {32 if name == "llama" else 64: 0.5} for f in table.attention.values())


def test_llama_width_fields_scale_ffn_and_head_dim_not_heads():
    cfg = hf.config_factory(transformers.LlamaForCausalLM, llama_config()).config_at(128)
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim, cfg.num_attention_heads) == (128, 352, 32, 4)
    with pytest.raises(FactoryError, match="width_fields"):
        hf.config_factory(transformers.LlamaForCausalLM, transformers.T5Config())


def _coord(cls, config, parametrization):
    factory = hf.config_factory(cls, config())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HPTransferWarning)
        return hpt.coord_check(factory, widths=(32, 64, 128, 256), parametrization=parametrization, task=charlm(),
                               batch_size=8, seeds=(0, 1))


@pytest.mark.slow  # 15-40 s each on 2 cores
@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize("parametrization, passes", [("mup", True), ("sp", False)])
def test_coord_check_default_options(name, parametrization, passes):
    cls, config, _ = MODELS[name]
    result = _coord(cls, config, parametrization)
    assert result.passed is passes, result.failing[:3]


@pytest.mark.slow
def test_gpt2_eager_attention_is_reported_and_fails_the_coord_check():
    with pytest.warns(HPTransferWarning, match=r"transformer\.h\.0\.attn"):
        hf.parametrize_config(transformers.GPT2LMHeadModel, gpt2_config("eager"), width=128, base_width=32,
                              example_input=X)
    result = _coord(transformers.GPT2LMHeadModel, lambda: gpt2_config("eager"), "mup")
    assert not result.passed
    assert {m for m, *_ in result.failing} >= {"transformer.h.0.attn[attn scale x d]"}


def test_save_and_load_keep_the_table(tmp_path):
    model = hf.parametrize_config(transformers.LlamaForCausalLM, llama_config(), width=128, base_width=32,
                                  example_input=X)
    hf.save_pretrained(model, tmp_path / "ckpt")
    back = hf.from_pretrained(transformers.LlamaForCausalLM, tmp_path / "ckpt")
    assert torch.allclose(back(X).logits, model(X).logits, atol=1e-6)
    plain = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "ckpt"))
    assert not torch.allclose(plain(X).logits, model(X).logits, atol=1e-3)  # why the table must come along
    with pytest.raises(ParametrizationError, match="hptransfer_table.json"):
        hf.from_pretrained(transformers.LlamaForCausalLM, tmp_path / "missing")


def test_save_refuses_a_model_whose_attention_is_not_traced_yet(tmp_path):
    model = hf.parametrize_config(transformers.LlamaForCausalLM, llama_config(), width=128, base_width=32)
    with pytest.raises(ParametrizationError, match="first forward"):
        hf.save_pretrained(model, tmp_path / "ckpt")
    model(X)
    hf.save_pretrained(model, tmp_path / "ckpt")


def test_recipe_naming_an_hf_architecture_parses_and_builds():
    from _helpers import ROOT

    from hptransfer.recipe import load_recipe
    from hptransfer.training import build

    recipe = load_recipe(ROOT / "recipes" / "hf_llama_tiny.yaml")
    built = build(recipe.at(128, {"lr": 0.01}))
    table = hpt.scaling_table(built.model)
    assert isinstance(built.model, transformers.LlamaForCausalLM) and built.model.config.hidden_size == 128
    assert table.base_width == 32 and table.params["model.layers.0.mlp.up_proj.weight"].shape == (352, 128)


@pytest.mark.slow  # 1-2.5 minutes on 2 cores
def test_hptransfer_run_on_the_shipped_hf_recipe_passes(tmp_path):
    from _helpers import ROOT

    from hptransfer.cli import main

    assert main(["run", str(ROOT / "recipes" / "hf_llama_tiny.yaml"), "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "target.yaml").is_file() and (tmp_path / "run" / "summary.md").is_file()
