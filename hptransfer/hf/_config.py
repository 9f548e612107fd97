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

from ..errors import FactoryError
from ..parametrization import parametrize

__all__ = ["WIDTH_FIELDS", "AUTO_CLASSES", "HFFactory", "config_factory", "parametrize_config", "hf_factory"]

#: Hidden size, FFN size and head dim: the width fields of most decoder-only configs.
_HIDDEN_FFN_HEAD = ("hidden_size", "intermediate_size", "head_dim")

#: ``model_type -> (width field, fields scaled in proportion)``. Fields that are ``None`` in a
#: config (GPT-2's ``n_inner``: 4 x n_embd) are left alone; the model derives them.
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
    "bert": ("hidden_size", "intermediate_size"),
    "opt": ("hidden_size", "ffn_dim", "word_embed_proj_dim"),
    "vit": ("hidden_size", "intermediate_size"),
    "t5": ("d_model", "d_ff", "d_kv"),
}

#: Architecture name in a recipe (``model: {hf: llama}``) -> the transformers auto class used.
_AUTO_CLASS = {"bert": "AutoModelForMaskedLM", "vit": "AutoModelForImageClassification"}
#: The auto classes a recipe may name (``model.hf_class``); looked up only from this list.
AUTO_CLASSES: tuple[str, ...] = ("AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModelForSequenceClassification",
                                 "AutoModelForImageClassification")


def _fields(config: Any, width_fields: str | Sequence[str] | None) -> tuple[str, ...]:
    if isinstance(width_fields, str):
        width_fields = (width_fields,)
    if width_fields is None:
        model_type = getattr(config, "model_type", None)
        if model_type not in WIDTH_FIELDS:
            raise FactoryError(
                f"hptransfer does not know which fields of a {model_type!r} config scale with width (known: "
                f"{', '.join(sorted(WIDTH_FIELDS))}). Fix: pass width_fields=['hidden_size', 'intermediate_size'] "
                "(the width first, then fields scaled in proportion to it)."
            )
        width_fields = WIDTH_FIELDS[model_type]
    fields = tuple(width_fields)
    if not fields or getattr(config, fields[0], None) is None:
        raise FactoryError(
            f"width field {fields[0] if fields else None!r} is not set in the {type(config).__name__}. "
            "Fix: name the config field that holds the width first in width_fields."
        )
    return fields


class HFFactory:
    """``width -> model``: ``model_cls(config)`` with the width fields set for ``width``.

    Picklable (a class, the config and field names), so tuning workers can rebuild it.
    ``model_cls`` is a transformers model class or any callable taking a config.
    """

    def __init__(self, model_cls: Callable[[Any], nn.Module], config: Any,
                 width_fields: str | Sequence[str] | None = None):
        self.model_cls, self.config = model_cls, config
        self.fields = _fields(config, width_fields)
        self.ref = getattr(config, self.fields[0])

    def config_at(self, width: int) -> Any:
        """A copy of the config with its width fields set for ``width``."""
        cfg = copy.deepcopy(self.config)
        for name in self.fields:
            value = getattr(self.config, name, None)
            if value is None:
                continue
            scaled = width * value / self.ref
            if abs(scaled - round(scaled)) > 1e-9:
                raise FactoryError(
                    f"width={width} gives {name}={scaled:g} (in proportion to {self.fields[0]}={self.ref}), not an "
                    f"integer. Fix: use widths that are multiples of {self.ref // _gcd(self.ref, value)}."
                )
            setattr(cfg, name, round(scaled))
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
    name = auto_class or _AUTO_CLASS.get(arch, "AutoModelForCausalLM")
    if name not in AUTO_CLASSES:
        raise FactoryError(f"model.hf_class={name!r} is not one of {', '.join(AUTO_CLASSES)}. Fix: use one of them.")
    fields: str | Sequence[str] | None = width_field
    if isinstance(width_field, str) and WIDTH_FIELDS.get(arch, ("",))[0] == width_field:
        fields = WIDTH_FIELDS[arch]  # the known proportional fields follow the named width field
    return HFFactory(_AutoFromConfig(name), cfg, fields)


class _AutoFromConfig:
    """``config -> model`` through a transformers auto class (picklable by name)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, config: Any) -> nn.Module:
        import transformers

        return getattr(transformers, self.name).from_config(config)
