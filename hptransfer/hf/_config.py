"""Hugging Face models from a config at any width: which config fields scale with width.

A Hugging Face model is built from a config object, so its "factory" is the config with its
width fields changed. For the architectures below hptransfer knows the fields; for others the
user names them. The first field is the width itself; the others are scaled in proportion to it
(the FFN size, the head dimension), which keeps the head count fixed, so the head dimension
grows with width, as in TP5's GPT experiments (Yang et al. 2022, arXiv:2203.03466, Sec. 6).
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..errors import FactoryError, warn
from ..parametrization import parametrize

__all__ = ["WIDTH_FIELDS", "PROPORTIONAL_FIELDS", "infer_width_fields", "AUTO_CLASSES", "HFFactory", "config_factory",
           "parametrize_config", "hf_factory", "has_causal_lm", "get_field"]

#: Hidden size, FFN size and head dim: the width fields of most decoder-only configs.
_HIDDEN_FFN_HEAD = ("hidden_size", "intermediate_size", "head_dim")

#: ``model_type -> (width field, fields scaled in proportion)``. Fields that are ``None`` in a
#: config (GPT-2's ``n_inner``: 4 x n_embd) are left alone; the model derives them. A dotted name
#: is a field of a sub-config (``ffn_config.ffn_hidden_size``).
WIDTH_FIELDS: dict[str, tuple[str, ...]] = {
    "gpt2": ("n_embd", "n_inner"),
    "llama": _HIDDEN_FFN_HEAD,
    "mistral": _HIDDEN_FFN_HEAD,
    "qwen2": _HIDDEN_FFN_HEAD,
    "qwen3": _HIDDEN_FFN_HEAD,
    "gemma": _HIDDEN_FFN_HEAD,
    # query_pre_attn_scalar stays: the attention module's own scaling is measured and rewritten to 1/d
    "gemma2": _HIDDEN_FFN_HEAD,
    "gemma3_text": _HIDDEN_FFN_HEAD,
    # mixtures of experts: fused 3-D expert weights (hidden in hptransfer's rules), routers read out in place
    "mixtral": _HIDDEN_FFN_HEAD,
    "qwen2_moe": ("hidden_size", "intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size"),
    "qwen3_moe": ("hidden_size", "intermediate_size", "moe_intermediate_size", "head_dim"),
    "olmoe": _HIDDEN_FFN_HEAD,
    # its FFN sizes live in a sub-config (dotted paths); set attn_config.clip_qkv: transformers 5.25's
    # DBRX forward fails with clip_qkv None
    "dbrx": ("d_model", "ffn_config.hidden_size", "ffn_config.ffn_hidden_size"),
    # head_dim is derived from hidden_size / heads unless the config sets it (then scaled with it; a
    # field missing from a config is left alone); coordinate checks: docs/hf_coord_sweep.md.
    "phi": _HIDDEN_FFN_HEAD,
    "phi3": _HIDDEN_FFN_HEAD,
    "gpt_neox": _HIDDEN_FFN_HEAD,
    "starcoder2": _HIDDEN_FFN_HEAD,
    "olmo": _HIDDEN_FFN_HEAD,
    "olmo2": _HIDDEN_FFN_HEAD,
    "cohere": _HIDDEN_FFN_HEAD,
    "stablelm": _HIDDEN_FFN_HEAD,
    "granite": _HIDDEN_FFN_HEAD,
    # coordinate checks of the rest: docs/hf_coord_sweep.md
    "falcon": ("hidden_size", "ffn_hidden_size"),  # its head_dim is derived (a property)
    "bloom": ("hidden_size",),  # the MLP is 4 x hidden_size
    "gptj": ("n_embd", "n_inner"),  # rotary_dim stays: rotary on the first dims of each head
    "gpt_bigcode": ("n_embd", "n_inner"),
    "bert": ("hidden_size", "intermediate_size"),
    "roberta": ("hidden_size", "intermediate_size"),
    "xlm-roberta": ("hidden_size", "intermediate_size"),
    "modernbert": ("hidden_size", "intermediate_size"),
    "distilbert": ("dim", "hidden_dim"),
    "electra": ("hidden_size", "intermediate_size", "embedding_size"),
    "deberta-v2": ("hidden_size", "intermediate_size", "pooler_hidden_size"),
    "opt": ("hidden_size", "ffn_dim", "word_embed_proj_dim"),
    "vit": ("hidden_size", "intermediate_size"),
    "t5": ("d_model", "d_ff", "d_kv"),
}

#: For an architecture with no entry above: config fields that, when set, are taken to scale in
#: proportion to the width (FFN and expert sizes, head dims, projection and embedding sizes).
PROPORTIONAL_FIELDS: tuple[str, ...] = (
    "intermediate_size", "ffn_dim", "ffn_hidden_size", "n_inner", "d_ff", "hidden_dim", "encoder_ffn_dim",
    "decoder_ffn_dim", "moe_intermediate_size", "shared_expert_intermediate_size", "intermediate_size_mlp",
    "head_dim", "d_kv", "word_embed_proj_dim", "embedding_size", "attention_hidden_size", "pooler_hidden_size",
    # multi-head latent attention (DeepSeek V2/V3): its low ranks and per-part head dims, kept consistent
    "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "qk_head_dim", "v_head_dim")

#: Architecture name in a recipe (``model: {hf: llama}``) -> the transformers auto class used.
_AUTO_CLASS = {"bert": "AutoModelForMaskedLM", "vit": "AutoModelForImageClassification"}
#: The auto classes a recipe may name (``model.hf_class``); looked up only from this list.
AUTO_CLASSES: tuple[str, ...] = ("AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModelForSequenceClassification",
                                 "AutoModelForImageClassification")


def get_field(config: Any, path: str) -> Any:
    """The value of a config field; ``path`` may go into a sub-config (``"ffn_config.ffn_hidden_size"``)."""
    for part in path.split("."):
        config = getattr(config, part, None)
    return config


def _set_field(config: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        config = getattr(config, part)
    setattr(config, last, value)


def _fields(config: Any, width_fields: str | Sequence[str] | None) -> tuple[str, ...]:
    model_type = getattr(config, "model_type", None)
    known = WIDTH_FIELDS.get(str(model_type))
    if known is not None and (width_fields is None or width_fields == known[0]):
        width_fields = known  # the known proportional fields follow the named width field
    elif width_fields is None or isinstance(width_fields, str):
        width_fields = infer_width_fields(config, width_fields)
    fields = tuple(width_fields)
    if not fields or get_field(config, fields[0]) is None:
        raise FactoryError(
            f"width field {fields[0] if fields else None!r} is not set in the {type(config).__name__}. "
            "Fix: name the config field that holds the width first in width_fields."
        )
    return fields


def infer_width_fields(config: Any, width_field: str | None = None) -> tuple[str, ...]:
    """The width fields of a config whose ``model_type`` has no :data:`WIDTH_FIELDS` entry.

    The width is ``width_field``, else the config's hidden size (``hidden_size``, or the field a
    config maps it to, as DistilBERT's ``dim`` or MPT's ``d_model``; in a config that has none, the
    text sub-config's, as ``text_config.hidden_size``); the fields of :data:`PROPORTIONAL_FIELDS` that
    the config sets follow it. So do those of each sub-config (DBRX's ``ffn_config``) whose own hidden
    size, if it has one, equals the width (it is the same quantity: ``ffn_config.hidden_size`` follows
    too); a sub-config of another size (a vision tower) stays as given. A warning names what was
    chosen and the sizes left fixed, since field names are a guess that ``hptransfer coord-check``
    should confirm. Fields in sub-configs are named by dotted paths (``ffn_config.ffn_hidden_size``).
    """
    model_type = getattr(config, "model_type", None)
    width = width_field or _hidden_field(config)
    if width is None:
        raise FactoryError(
            f"hptransfer does not know which fields of a {model_type!r} config scale with width and found no hidden "
            f"size in it (known architectures: {', '.join(sorted(WIDTH_FIELDS))}). Fix: pass width_fields=["
            "'<width field>', '<FFN size field>', ...] (in a recipe: model.width_field), the width first.")
    follow: list[str] = []
    fixed: list[str] = []
    scopes = _scopes(config, get_field(config, width))
    for prefix, cfg in scopes:
        names = PROPORTIONAL_FIELDS if not prefix else (*_HIDDEN_NAMES, *PROPORTIONAL_FIELDS)
        # A field the config derives (a property, as Falcon's head_dim) follows by itself and cannot be set.
        own = [prefix + f for f in dict.fromkeys(names) if prefix + f != width and _size(getattr(cfg, f, None))
               and not isinstance(getattr(type(cfg), f, None), property)]
        follow += own
        fixed += _other_sizes(cfg, prefix, (width, *own))
    for prefix, cfg in _subconfigs(config):  # sub-configs of another size: every size in them stays
        if prefix not in dict(scopes):
            fixed += _other_sizes(cfg, prefix, ())
    kept = ", ".join(f"{k}={get_field(config, k)}" for k in sorted(fixed)) + " stay" if fixed else "no other size is"
    warn(
        f"{model_type!r} has no entry in hptransfer.hf.WIDTH_FIELDS: {width} is the width"
        f"{' and ' + ', '.join(follow) + ' scale in proportion to it' if follow else ' and nothing else scales'}"
        f" (chosen by field name); {kept} fixed. Check it with hptransfer coord-check. Fix, if that is not what "
        "you want: name the fields yourself (width_fields=[...], the width first).")
    return (width, *follow)


#: Names a config gives its hidden size (besides what its ``attribute_map`` maps ``hidden_size`` to).
_HIDDEN_NAMES = ("hidden_size", "d_model", "n_embd", "dim", "embed_dim")
#: Integer fields that are counts or ids, not sizes that could scale with width: parts of their names.
_NOT_SIZES = ("vocab", "position", "token", "layers", "heads", "experts", "window", "seq", "ctx", "_id", "top_k")


def _other_sizes(cfg: Any, prefix: str, skip: Sequence[str]) -> list[str]:
    """The dotted names of ``cfg``'s integer fields of 8 or more that look like sizes, except ``skip``."""
    return [prefix + k for k, v in vars(cfg).items() if prefix + k not in skip and _size(v) and v >= 8
            and not k.startswith(("_", "num_")) and not any(t in k for t in _NOT_SIZES)]


def _subconfigs(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted prefix, sub-config)`` for every config nested in ``config`` (two levels at most)."""
    out = []
    for key, value in vars(config).items():
        if not key.startswith("_") and hasattr(value, "to_dict") and hasattr(value, "model_type"):
            out.append((f"{prefix}{key}.", value))
            if not prefix:
                out += _subconfigs(value, f"{key}.")
    return out


def _scopes(config: Any, width_value: Any) -> list[tuple[str, Any]]:
    """The config (prefix ``""``) and the sub-configs whose sizes follow the width: those with no hidden
    size of their own, or one equal to the width's value."""
    scopes = [("", config)]
    for prefix, cfg in _subconfigs(config):
        hidden = _hidden_field(cfg, nested=False)
        if hidden is None or getattr(cfg, hidden) == width_value:
            scopes.append((prefix, cfg))
    return scopes


def _hidden_field(config: Any, *, nested: bool = True) -> str | None:
    mapped = getattr(config, "attribute_map", {}).get("hidden_size")
    for name in (mapped, *_HIDDEN_NAMES):
        if name and _size(getattr(config, name, None)):
            return name
    if nested:  # a composite config (text + vision): the text model's hidden size
        subs = sorted(_subconfigs(config), key=lambda s: not s[0].startswith("text_config"))
        for prefix, cfg in subs:
            if (name := _hidden_field(cfg, nested=False)) is not None:
                return prefix + name
    return None


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class HFFactory:
    """``width -> model``: ``model_cls(config)`` with the width fields set for ``width``.

    Picklable (a class, the config and field names), so tuning workers can rebuild it.
    ``model_cls`` is a transformers model class or any callable taking a config.
    """

    def __init__(self, model_cls: Callable[[Any], nn.Module], config: Any,
                 width_fields: str | Sequence[str] | None = None):
        self.model_cls, self.config = model_cls, config
        self.fields = _fields(config, width_fields)
        self.ref = get_field(config, self.fields[0])

    def config_at(self, width: int) -> Any:
        """A copy of the config with its width fields set for ``width``."""
        cfg = copy.deepcopy(self.config)
        for name in self.fields:
            value = get_field(self.config, name)
            if value is None:
                continue
            scaled = width * value / self.ref
            if abs(scaled - round(scaled)) > 1e-9:
                raise FactoryError(
                    f"width={width} gives {name}={scaled:g} (in proportion to {self.fields[0]}={self.ref}), not an "
                    f"integer. Fix: use widths that are multiples of {self.ref // _gcd(self.ref, value)}."
                )
            _set_field(cfg, name, round(scaled))
        return cfg

    def __call__(self, width: int) -> nn.Module:
        return self.model_cls(self.config_at(int(width)))


def _last_line(exc: BaseException) -> str:
    """The innermost message of an exception chain, on one line (validators wrap the real reason)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return " ".join(str(exc).split()) or type(exc).__name__


def _gcd(a: int, b: int) -> int:
    import math

    return math.gcd(int(a), int(b)) or 1


def config_factory(model_cls: Callable[[Any], nn.Module], config: Any,
                   width_fields: str | Sequence[str] | None = None) -> HFFactory:
    """The ``width -> model`` factory of a Hugging Face model class and config.

    Args:
        model_cls: e.g. ``transformers.LlamaForCausalLM`` (anything called with a config).
        config: the config at any width (e.g. ``LlamaConfig(hidden_size=256, ...)``); its other
            fields (layers, heads, vocabulary, ``_attn_implementation``) are kept.
        width_fields: the config field holding the width, then fields scaled in proportion to it;
            default from :data:`WIDTH_FIELDS` by ``config.model_type``.
    """
    return HFFactory(model_cls, config, width_fields)


def parametrize_config(model_cls: Callable[[Any], nn.Module], config: Any, *, width: int, base_width: int,
                       width_fields: str | Sequence[str] | None = None, **options: Any) -> nn.Module:
    """:func:`hptransfer.parametrize` for a Hugging Face model class and config.

    ``width`` and ``base_width`` are values of the width field (``hidden_size``, ``n_embd``);
    ``options`` go to :func:`hptransfer.parametrize` (``parametrization``, ``example_input``, ...).
    Default options: the model's own init (N(0, 0.02^2) for most HF models) is measured and
    rescaled to μP, and attention is rescaled to 1/d through the attention module's ``scaling``
    attribute, for every ``attn_implementation`` (eager and sdpa included).
    """
    return parametrize(config_factory(model_cls, config, width_fields), width=width, base_width=base_width,
                       **options)


def hf_factory(arch: str, config: dict[str, Any], width_field: str | Sequence[str] | None = None,
               auto_class: str | None = None) -> HFFactory:
    """The factory of a recipe's ``model: {hf: <model_type>, config: {...}}`` (imports transformers).

    ``auto_class`` defaults to ``AutoModelForCausalLM`` (``AutoModelForMaskedLM`` for BERT,
    ``AutoModelForImageClassification`` for ViT).
    """
    try:
        import transformers
    except ImportError:
        raise FactoryError(
            "model.hf needs the transformers package. Fix: pip install 'hptransfer[hf]'."
        ) from None
    known = getattr(transformers, "CONFIG_MAPPING", None)  # a lazy mapping: `in` works, len() may be 0
    if known is not None and arch not in known:
        close = difflib.get_close_matches(arch, sorted({*WIDTH_FIELDS, *known.keys()}), n=3)
        raise FactoryError(f"model.hf={arch!r} is not a model_type transformers {transformers.__version__} knows"
                           f"{' (close: ' + ', '.join(close) + ')' if close else ''}. Fix: name one it knows; "
                           f"hptransfer knows the width fields of {', '.join(WIDTH_FIELDS)}.")
    try:
        cfg = transformers.AutoConfig.for_model(arch, **config)
    except Exception as exc:  # transformers' validators raise their own classes (huggingface_hub's), not ValueError
        reason = _last_line(exc).rstrip(".")
        raise FactoryError(f"transformers rejected model.config for model.hf={arch!r}: {reason}. Fix: correct the "
                           f"model.config fields it names (given: {config}).") from None
    name = auto_class or _AUTO_CLASS.get(arch) or _default_auto_class(arch)
    if name not in AUTO_CLASSES:
        raise FactoryError(f"model.hf_class={name!r} is not one of {', '.join(AUTO_CLASSES)}. Fix: use one of them.")
    return HFFactory(_AutoFromConfig(name), cfg, width_field)


def _default_auto_class(arch: str) -> str:
    """``AutoModelForCausalLM``, or ``AutoModelForMaskedLM`` for an encoder with no causal-LM class in
    transformers (DistilBERT, DeBERTa-v2, ModernBERT, ...)."""
    from transformers.models.auto import modeling_auto

    masked = getattr(modeling_auto, "MODEL_FOR_MASKED_LM_MAPPING_NAMES", {})
    # A causal-LM class where there is one (BART's decoder, RoBERTa's with is_decoder); preflight refuses
    # one that still attends both ways on a next-token task, with the fix.
    return "AutoModelForMaskedLM" if arch in masked and not has_causal_lm(arch) else "AutoModelForCausalLM"


def has_causal_lm(arch: str) -> bool:
    """Whether transformers has a causal-LM class for ``model_type`` ``arch`` (False without transformers)."""
    try:
        from transformers.models.auto import modeling_auto
    except ImportError:
        return False
    return arch in getattr(modeling_auto, "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", {})


class _AutoFromConfig:
    """``config -> model`` through a transformers auto class (picklable by name)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, config: Any) -> nn.Module:
        import transformers

        return getattr(transformers, self.name).from_config(config)
