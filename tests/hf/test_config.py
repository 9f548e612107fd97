"""Hugging Face models from a config with default options: exact at the base width, 1/m hidden
LRs, μP coordinate check passes and SP fails, attention rescaled to 1/d for eager and sdpa, and
checkpoints that keep the table. Skipped when transformers is absent (CI installs the extra)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _helpers import charlm, hpt_warns, no_warnings

transformers = pytest.importorskip("transformers")

import hptransfer as hpt  # noqa: E402
from hptransfer import hf  # noqa: E402
from hptransfer.errors import FactoryError, ParametrizationError  # noqa: E402

transformers.logging.set_verbosity_error()
X = torch.randint(0, 256, (2, 16))
SPECIAL = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}


def gpt2_config(impl: str = "sdpa"):
    c = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=256, n_positions=16, resid_pdrop=0.0,
                                embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    c._attn_implementation = impl
    return c


def _decoder_config(config_cls, intermediate_size: int):
    """A 2-layer GQA decoder config (Llama layout) at width 64, sdpa attention."""
    c = config_cls(hidden_size=64, intermediate_size=intermediate_size, head_dim=16, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, vocab_size=256, max_position_embeddings=16, **SPECIAL)
    c._attn_implementation = "sdpa"
    return c


def llama_config():
    return _decoder_config(transformers.LlamaConfig, 176)


def bert_config():
    return transformers.BertConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                                   vocab_size=256, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0, pad_token_id=0)


def vit_config():
    return transformers.ViTConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=8, patch_size=4, num_channels=3, num_labels=5, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)


def gemma_config():
    # Gemma multiplies its embeddings by sqrt(hidden_size) (held at the base value under μP: _constants)
    return _decoder_config(transformers.GemmaConfig, 128)


MODELS = {
    "gpt2": (transformers.GPT2LMHeadModel, gpt2_config, X),
    "llama": (transformers.LlamaForCausalLM, llama_config, X),
    "gemma": (transformers.GemmaForCausalLM, gemma_config, X),
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
    assert table.attention and all(f == {32 if name in ("llama", "gemma") else 64: 0.5}
                                   for f in table.attention.values())
    # only Gemma's forward multiplies a module output by a width-dependent constant (its sqrt(d) embed_scale)
    held = [(m.module, m.kind, m.multiplier) for m in table.module_scalings if "constant" in m.reason]
    assert held == ([("model.embed_tokens", "output", 0.5)] if name == "gemma" else [])


def test_llama_width_fields_scale_ffn_and_head_dim_not_heads():
    cfg = hf.config_factory(transformers.LlamaForCausalLM, llama_config()).config_at(128)
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim, cfg.num_attention_heads) == (128, 352, 32, 4)
    # an architecture with no entry (BART): its fields by name, with a warning that lists them
    with hpt_warns(r"'bart' has no entry.*d_model is the width and encoder_ffn_dim, "
                                               r"decoder_ffn_dim scale in proportion"):
        bart = hf.config_factory(transformers.BartForCausalLM, transformers.BartConfig())
    assert bart.fields == ("d_model", "encoder_ffn_dim", "decoder_ffn_dim")


def _coord(cls, config, parametrization):
    factory = hf.config_factory(cls, config())

    return hpt.coord_check(factory, widths=(32, 64, 128, 256), parametrization=parametrization, task=charlm(),
                           batch_size=8, seeds=(0, 1))


@pytest.mark.slow  # 15-40 s each on 2 cores
@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma"])
@pytest.mark.parametrize("parametrization, passes", [("mup", True), ("sp", False)])
def test_coord_check_default_options(name, parametrization, passes):
    cls, config, _ = MODELS[name]
    result = _coord(cls, config, parametrization)
    assert result.passed is passes, result.failing[:3]


def llama_impl_config(impl: str):
    c = llama_config()
    c._attn_implementation = impl
    return c


ATTENTION = {
    "gpt2-eager": (transformers.GPT2LMHeadModel, lambda: gpt2_config("eager")),
    "gpt2-sdpa": (transformers.GPT2LMHeadModel, lambda: gpt2_config("sdpa")),
    "llama-eager": (transformers.LlamaForCausalLM, lambda: llama_impl_config("eager")),
    "llama-sdpa": (transformers.LlamaForCausalLM, lambda: llama_impl_config("sdpa")),
}


def _softmax_scales(model, x):  # x: a tensor or a dict of keyword inputs
    """The softmax scale each attention module actually used on ``x``: the ``scale`` handed to SDPA,
    or for eager attention the ratio of the softmax input to q @ k^T, from real tensors."""
    from hptransfer.parametrization._trace import AttentionTracer, module_stack

    stack, handles = module_stack(model)
    tracer = AttentionTracer(stack, measure_scale=True)
    try:
        with torch.no_grad(), tracer:
            model(**x) if isinstance(x, dict) else model(x)
    finally:
        for h in handles:
            h.remove()
    return {m: [s for _, s in calls] for m, calls in tracer.scales.items()}


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_attention_is_rescaled_to_one_over_d_for_eager_and_sdpa(name):
    cls, config = ATTENTION[name]
    factory = hf.config_factory(cls, config())
    torch.manual_seed(0)
    plain = factory(32)
    torch.manual_seed(0)
    base = hf.parametrize_config(cls, config(), width=32, base_width=32, example_input=X)
    assert torch.equal(_logits(plain, X), _logits(base, X))  # exact at the base width
    with no_warnings(python=False):  # nothing left to report
        wide = hf.parametrize_config(cls, config(), width=64, base_width=32, attn_mult=2.0, example_input=X)
    d, d0 = (32, 16) if name.startswith("gpt2") else (16, 8)  # GPT-2: 2 heads; Llama: head_dim in proportion
    scales = _softmax_scales(wide, X)
    assert len(scales) == 2  # both layers
    for used in scales.values():
        assert used == pytest.approx([2.0 * math.sqrt(d0) / d], rel=1e-4)  # attn_mult * sqrt(d_base) / d
    assert set(hpt.scaling_table(wide).attention) == {f"scaling:{m}" for m in scales}


def test_eager_and_sdpa_compute_the_same_rescaled_model_and_leak_nothing():
    models = {}
    for impl in ("eager", "sdpa"):
        torch.manual_seed(0)
        models[impl] = hf.parametrize_config(transformers.GPT2LMHeadModel, gpt2_config(impl), width=128,
                                             base_width=32, example_input=X)
    assert torch.allclose(_logits(models["eager"], X), _logits(models["sdpa"], X), atol=1e-5)
    # a deep copy and a second attach keep the scale (never multiplied twice), a fresh model is untouched
    copied = copy.deepcopy(models["eager"])
    hpt.attach_table(copied, hpt.scaling_table(copied))
    assert torch.allclose(_logits(copied, X), _logits(models["eager"], X), atol=1e-6)
    fresh = hf.config_factory(transformers.GPT2LMHeadModel, gpt2_config("eager"))(128)
    assert fresh.transformer.h[0].attn.scaling == 64 ** -0.5
    assert copied.transformer.h[0].attn.scaling == pytest.approx(math.sqrt(16) / 64)


def test_gpt2_eager_round_trips_through_save_and_load(tmp_path):
    model = hf.parametrize_config(transformers.GPT2LMHeadModel, gpt2_config("eager"), width=128, base_width=32,
                                  example_input=X)
    hf.save_pretrained(model, tmp_path / "ckpt")
    back = hf.from_pretrained(transformers.GPT2LMHeadModel, tmp_path / "ckpt", attn_implementation="eager")
    assert torch.allclose(_logits(back, X), _logits(model, X), atol=1e-5)
    assert back.transformer.h[1].attn.scaling == pytest.approx(math.sqrt(16) / 64)


def _gpt2_eager_coord(**options):
    factory = hf.config_factory(transformers.GPT2LMHeadModel, gpt2_config("eager"))
    return hpt.coord_check(factory, widths=(32, 64, 128), task=charlm(), batch_size=8, seeds=(0,), **options)


def test_gpt2_eager_coord_check_passes_under_mup_and_fails_with_attention_off():
    result = _gpt2_eager_coord()
    assert result.passed, result.failing[:3]
    off = _gpt2_eager_coord(attention="off")
    assert not off.passed
    assert {m for m, *_ in off.failing} >= {"transformer.h.0.attn[attn scale x d]"}


def t5_config(scale_decoder_outputs: bool = False):
    # transformers 5 always ties T5's lm_head to its embedding; tie_word_embeddings=False (T5 v1.1) only turns
    # off the decoder output's d_model^-0.5 rescale
    c = transformers.T5Config(d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=1, vocab_size=64,
                              dropout_rate=0.0, tie_word_embeddings=scale_decoder_outputs, decoder_start_token_id=0,
                              pad_token_id=0)
    c._attn_implementation = "eager"
    return c


def test_t5_width_fields_and_its_scale_one_attention_get_d_base_over_d():
    cls, x = transformers.T5ForConditionalGeneration, torch.randint(0, 64, (2, 8))
    ex = {"input_ids": x, "decoder_input_ids": x}
    cfg = hf.config_factory(cls, t5_config()).config_at(64)
    assert (cfg.d_model, cfg.d_ff, cfg.d_kv, cfg.num_heads) == (64, 128, 32, 2)
    torch.manual_seed(0)
    plain = hf.config_factory(cls, t5_config())(32)
    torch.manual_seed(0)
    base = hf.parametrize_config(cls, t5_config(), width=32, base_width=32)
    assert torch.equal(plain(**ex).logits, base(**ex).logits)
    wide = hf.parametrize_config(cls, t5_config(), width=64, base_width=32, example_input=ex)
    table = hpt.scaling_table(wide)
    # T5 multiplies q k^T by 1.0 at every width: μP's 1/d relative to the base is a factor d0/d = 1/2 (not sqrt)
    assert len(table.attention) == 3 and all(f == {32: pytest.approx(0.5)} for f in table.attention.values())
    used = _softmax_scales(wide, ex)["decoder.block.0.layer.1.EncDecAttention"]  # no position bias added there
    assert used == pytest.approx([0.5])
    assert table.params["shared.weight"].readout_module == "lm_head"  # tied readout, hooked
    sp = hf.parametrize_config(cls, t5_config(), width=64, base_width=32, example_input=ex, parametrization="sp")
    assert all(f == {32: 1.0} for f in hpt.scaling_table(sp).attention.values())


def _t5_batch(step):
    g = torch.Generator().manual_seed(step)
    x = torch.randint(1, 64, (8, 12), generator=g)
    return (x, None, torch.cat([torch.zeros(8, 1, dtype=torch.long), x[:, :-1]], 1)), x  # (ids, mask, decoder ids)


def _t5_loss(out, y):
    return torch.nn.functional.cross_entropy(out.logits.reshape(-1, 64), y.reshape(-1))


@pytest.mark.parametrize("parametrization, passes", [("mup", True), ("sp", False)])
def test_t5_coord_check_passes_under_mup_and_fails_under_sp(parametrization, passes):
    factory = hf.config_factory(transformers.T5ForConditionalGeneration, t5_config())
    result = hpt.coord_check(factory, widths=(32, 64, 128), parametrization=parametrization, batch_fn=_t5_batch,
                             loss_fn=_t5_loss, seeds=(0,))
    assert result.passed is passes, result.failing[:3]


def opt_config():
    return transformers.OPTConfig(hidden_size=64, ffn_dim=256, word_embed_proj_dim=64, num_hidden_layers=2,
                                  num_attention_heads=2, vocab_size=256, max_position_embeddings=32, dropout=0.0,
                                  **SPECIAL)


@pytest.mark.parametrize("attention, passes", [("auto", True), ("off", False)])
def test_opt_query_prescaled_by_its_scaling_is_rescaled_and_measured(attention, passes):
    # OPT multiplies q_proj's output by self.scaling and hands 1.0 to the attention function: the rewritten
    # attribute is the scale in use, and the coordinate check reads it there (it used to read the 1.0 and
    # failed μP with [attn scale x d] growing as d); with attention="off" the scale stays 1/sqrt(d) and fails.
    result = hpt.coord_check(hf.config_factory(transformers.OPTForCausalLM, opt_config()), widths=(32, 64, 128, 256),
                             task=charlm(), batch_size=8, seeds=(0, 1), attention=attention)
    scales = [m for m in result.modules if m.endswith("[attn scale x d]")]
    assert scales and result.passed is passes, result.failing[:3]
    assert all(abs(result.slopes[m][0]) < 0.05 for m in scales) is passes


def test_original_t5_decoder_output_rescale_is_held_at_the_base_value():
    # Original T5 multiplies the decoder output by d_model^-0.5 before its tied lm_head. Left to shrink
    # with width, the logits fell an extra 1/sqrt(m) and their updates vanished (lm_head update slope
    # -0.94 at step 1: the check failed); held at the base value, the logits scale as T5 v1.1's.
    factory = hf.config_factory(transformers.T5ForConditionalGeneration, t5_config(scale_decoder_outputs=True))
    ex = {"input_ids": X[:, :8] % 64, "decoder_input_ids": X[:, 8:] % 64}
    table = hpt.scaling_table(hpt.parametrize(factory, width=64, base_width=32, example_input=ex))
    held = [(m.module, m.kind, m.multiplier) for m in table.module_scalings if "constant" in m.reason]
    assert held == [("decoder", "constant", pytest.approx(math.sqrt(2)))]
    result = hpt.coord_check(factory, widths=(32, 64, 128), batch_fn=_t5_batch, loss_fn=_t5_loss, seeds=(0, 1))
    assert result.passed, result.failing[:3]


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


@pytest.mark.parametrize("arch", ["gemma2", "gemma3_text"])
def test_a_recipe_naming_gemma_2_or_3_scales_its_mlp_and_heads_and_names_it_in_errors(arch):
    from _helpers import ROOT

    from hptransfer.errors import ParametrizationError
    from hptransfer.recipe import load_recipe
    from hptransfer.training import build

    cfg = ("model.config={hidden_size: 32, intermediate_size: 64, head_dim: 8, num_hidden_layers: 1, "
           "num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 256, max_position_embeddings: 32, "
           "query_pre_attn_scalar: 8}")
    recipe = load_recipe(ROOT / "recipes" / "hf_llama_tiny.yaml",
                         [f"model.hf={arch}", cfg, "parametrization.zero_readout=false"])
    model = build(recipe.at(128, {"lr": 0.01})).model
    assert (model.config.intermediate_size, model.config.head_dim) == (256, 32)  # in proportion to the width
    table = hpt.scaling_table(model)
    assert table.params["model.layers.0.mlp.down_proj.weight"].role == "hidden"
    # the attention's own scale is query_pre_attn_scalar ** -0.5, the same at every width: to become
    # sqrt(d_base)/d (what 1/sqrt(d) models get with x sqrt(d_base/d)) it takes x d_base/d = 8/32
    assert next(iter(table.attention.values())) == {32: pytest.approx(0.25)}
    # Gemma ties its readout to the embedding: zero_readout names the model and the fix
    tied = load_recipe(ROOT / "recipes" / "hf_llama_tiny.yaml", [f"model.hf={arch}", cfg])
    with pytest.raises(ParametrizationError, match=rf"model hf: {arch} at width=128 .*tied.*Fix: untie"):
        build(tied.at(128, {"lr": 0.01}))


def test_a_config_transformers_rejects_or_an_unknown_architecture_is_a_factory_error_with_the_fix():
    from hptransfer.hf import hf_factory

    cfg = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 5}
    # transformers' own validator (a huggingface_hub error class, not a ValueError) names the problem
    with pytest.raises(FactoryError, match=r"rejected model.config for model.hf='llama': The hidden size \(64\) is "
                                           r"not a multiple of the number of attention heads \(5\)\. Fix: correct"):
        hf_factory("llama", cfg)
    with pytest.raises(FactoryError, match=r"model.hf='llamaa' is not a model_type .*\(close: llama"):
        hf_factory("llamaa", {})


def test_known_breakers_are_diagnosed_on_a_recipe_naming_an_hf_model():
    from _helpers import ROOT

    from hptransfer.diagnostics import diagnose
    from hptransfer.recipe import load_recipe

    found = diagnose(load_recipe(ROOT / "recipes" / "hf_llama_tiny.yaml"))
    # Llama's RMSNorm gains train at the base LR (Lingle 2024); its attention is rescaled, so no other
    assert [d.code for d in found] == ["norm-gains"] and "model.layers.0.input_layernorm.weight" in found[0].message
    assert diagnose(load_recipe(ROOT / "recipes" / "hf_llama_tiny.yaml", ["parametrization.gains=freeze"])) == []


NEW_ARCHS = ("phi", "phi3", "gpt_neox", "starcoder2", "olmo", "olmo2", "cohere", "stablelm", "granite")


def _small(width: int, **extra: int) -> dict:
    return {"hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": 1, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 32, "bos_token_id": 0,
            "eos_token_id": 0, "pad_token_id": 0, **extra}


@pytest.mark.parametrize("arch", NEW_ARCHS)
def test_more_architectures_scale_hidden_and_ffn_and_get_one_over_d_attention(arch):
    from hptransfer.hf import hf_factory

    # no width_field: known for these. head_dim given as a recipe may give it (hf_llama_tiny does), which
    # OLMo 2 and others then use: it must grow with the width, or the attention would stay 4 x 8 wide
    factory = hf_factory(arch, _small(32, head_dim=8))
    model = hpt.parametrize(factory, width=128, base_width=32, example_input=torch.randint(0, 256, (2, 8)))
    assert (model.config.hidden_size, model.config.intermediate_size, model.config.head_dim) == (128, 256, 32)
    table = hpt.scaling_table(model)
    readouts = [n for n, i in table.params.items() if i.role == "output"]  # none when tied (starcoder2, cohere)
    assert all(n.split(".")[0] in ("lm_head", "embed_out") for n in readouts), readouts
    # 4 heads at every width: the head dim goes 8 -> 32, so the softmax scale gets sqrt(8/32) (or d_base/d
    # for Granite, whose attention_multiplier replaces 1/sqrt(d)); one entry per attention module
    assert len(table.attention) == 1 and all(f for v in table.attention.values() for f in v.values())
    assert sum(i.role == "hidden" for i in table.params.values()) >= 3


@pytest.mark.slow  # ~25 s: μP passes and SP fails the coordinate check (all 9: scripts/hf_coord_sweep.py)
@pytest.mark.parametrize("arch", ["phi3", "granite"])
def test_more_architectures_pass_the_coordinate_check_under_mup_only(arch):
    from hptransfer.hf import hf_factory
    from hptransfer.zoo import get_task

    task = get_task("charlm", block_size=16, n_bytes=200_000)
    res = {p: hpt.coord_check(hf_factory(arch, _small(32)), widths=(32, 64, 128, 256), parametrization=p, task=task,
                              batch_size=8, steps=4, seeds=(0, 1)) for p in ("mup", "sp")}
    assert res["mup"].passed, res["mup"].summary()
    assert not res["sp"].passed


ENCODERS_AND_OLDER_DECODERS = {  # config fields at width 32 (layers, heads, vocabulary as _small's)
    "roberta": {"hidden_size": 32, "intermediate_size": 64},
    "distilbert": {"dim": 32, "hidden_dim": 64, "n_layers": 1, "n_heads": 4},
    "electra": {"hidden_size": 32, "embedding_size": 32, "intermediate_size": 64},
    "falcon": {"hidden_size": 32, "ffn_hidden_size": 64, "num_kv_heads": 4, "new_decoder_architecture": True},
    "gptj": {"n_embd": 32, "n_head": 4, "n_layer": 1, "rotary_dim": 4},
}


@pytest.mark.parametrize("arch", sorted(ENCODERS_AND_OLDER_DECODERS))
def test_encoders_and_older_decoders_scale_their_own_fields_with_no_warning(arch):

    from hptransfer.hf import WIDTH_FIELDS, hf_factory

    cfg = {"num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 256, "max_position_embeddings": 32,
           "pad_token_id": 0, **ENCODERS_AND_OLDER_DECODERS[arch]}
    with no_warnings():  # a known architecture: nothing is guessed
        factory = hf_factory(arch, cfg)
    model = hpt.parametrize(factory, width=128, base_width=32, example_input=torch.randint(0, 256, (2, 8)))
    for field in WIDTH_FIELDS[arch]:
        assert getattr(model.config, field) == 4 * cfg.get(field, 0) or cfg.get(field) is None, field
    table = hpt.scaling_table(model)
    assert table.attention and sum(i.role == "hidden" for i in table.params.values()) >= 4
    # an encoder with no causal-LM class (DistilBERT) gets its masked-LM class; the others their causal-LM one
    assert type(model).__name__.endswith("ForMaskedLM" if arch == "distilbert" else "ForCausalLM")


def test_an_architecture_with_no_entry_gets_its_fields_by_name_and_a_warning_that_says_which():
    import typing

    from hptransfer.hf import WIDTH_FIELDS, hf_factory, infer_width_fields

    assert "persimmon" not in WIDTH_FIELDS
    with hpt_warns(r"'persimmon' has no entry in hptransfer.hf.WIDTH_FIELDS: hidden_size "
                                               r"is the width and intermediate_size scale in proportion.*coord-check"):
        factory = hf_factory("persimmon", {**_small(32), "num_key_value_heads": 4})
    assert factory.fields == ("hidden_size", "intermediate_size")
    model = hpt.parametrize(factory, width=64, base_width=32, example_input=torch.randint(0, 256, (2, 8)))
    assert (model.config.hidden_size, model.config.intermediate_size) == (64, 128)
    # a width field named in the recipe brings the proportional fields along (the FFN does not stay fixed)
    assert hf_factory("persimmon", {**_small(32), "num_key_value_heads": 4}, "hidden_size").fields == (
        "hidden_size", "intermediate_size")

    class NoWidth:
        model_type = "mystery"
        attribute_map: typing.ClassVar[dict] = {}

        def to_dict(self) -> dict:
            return {}

    with pytest.raises(FactoryError, match=r"no hidden size.*Fix: pass width_fields="):
        infer_width_fields(NoWidth())


def test_deepseek_latent_attention_scales_its_ranks_and_head_dims_together():
    """DeepSeek V3 (no entry): its low ranks and rope/nope head dims follow the width with the hidden size,
    or the rotary halves would disagree (a forward error) and the rank-16 projections would look like readouts."""
    from hptransfer.hf import hf_factory

    cfg = {**_small(32), "num_key_value_heads": 4, "moe_intermediate_size": 16, "n_routed_experts": 4,
           "num_experts_per_tok": 2, "kv_lora_rank": 16, "q_lora_rank": 16, "qk_rope_head_dim": 4, "v_head_dim": 8,
           "qk_nope_head_dim": 8, "head_dim": 4, "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1}
    with hpt_warns("'deepseek_v3' has no entry"):
        factory = hf_factory("deepseek_v3", cfg)
    model = hpt.parametrize(factory, width=64, base_width=32, example_input=torch.randint(0, 256, (2, 8)))
    c = model.config
    assert (c.kv_lora_rank, c.q_lora_rank, c.qk_rope_head_dim, c.qk_nope_head_dim, c.v_head_dim) == (32, 32, 8, 16, 16)
    table = hpt.scaling_table(model)
    assert [n for n, i in table.params.items() if i.role == "output" and i.readout_module] == ["lm_head.weight"]
    model(torch.randint(0, 256, (2, 8)))  # the latent attention's parts agree at the new width


def test_an_encoder_on_the_byte_lm_is_refused_and_its_causal_lm_form_accepted():
    from hptransfer.errors import TrainingError
    from hptransfer.recipe import parse_recipe
    from hptransfer.training._preflight import preflight

    data = {"name": "enc", "model": {"hf": "roberta", "config": {
                "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                "vocab_size": 256, "max_position_embeddings": 40, "pad_token_id": 0, "type_vocab_size": 1}},
            "task": {"name": "charlm", "kwargs": {"block_size": 16, "n_bytes": 20000}},
            "train": {"batch_size": 4, "steps": 2}, "widths": {"proxy": 32, "target": 64},
            "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}}}
    with pytest.raises(TrainingError, match=r"sees later positions.*Fix: set model.config.is_decoder: true with "
                                            r"model.hf_class: AutoModelForCausalLM"):
        preflight(parse_recipe(data))
    data["model"]["config"]["is_decoder"] = True
    data["model"]["hf_class"] = "AutoModelForCausalLM"
    preflight(parse_recipe(data))  # RoBERTa as a decoder: causal, accepted


def test_an_encoder_with_no_causal_lm_class_is_told_to_use_a_decoder():
    # The fix used to say is_decoder + AutoModelForCausalLM, which DistilBERT does not have.
    from hptransfer.errors import TrainingError
    from hptransfer.recipe import parse_recipe
    from hptransfer.training._preflight import preflight

    data = {"name": "enc", "model": {"hf": "distilbert", "config": {
                "dim": 32, "hidden_dim": 64, "n_layers": 1, "n_heads": 4, "vocab_size": 256,
                "max_position_embeddings": 40, "pad_token_id": 0}},
            "task": {"name": "charlm", "kwargs": {"block_size": 16, "n_bytes": 20000}},
            "train": {"batch_size": 4, "steps": 2}, "widths": {"proxy": 32, "target": 64},
            "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}}}
    with pytest.raises(TrainingError, match=r"sees later positions.*Fix: use a decoder \(model.hf='distilbert' has "
                                            r"no causal-LM class") as err:
        preflight(parse_recipe(data))
    assert "is_decoder" not in str(err.value)
