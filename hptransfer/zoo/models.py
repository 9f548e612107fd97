"""Reference models used by the tests, the recipes and the benchmarks.

Every factory is a plain function whose first positional argument is ``width`` (the
dimension that μP scales); all other arguments are keyword-only with defaults. Factories
return a standard-parametrized PyTorch module with PyTorch's default initializations:
hptransfer rewrites models into μP from the outside, so nothing here knows about μP.

All factories build under ``with torch.device("meta"):`` because ``__init__`` does no
data-dependent work and never passes an explicit ``device=``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hptransfer.errors import FactoryError, HPTransferError

__all__ = [
    "CNN",
    "GPT",
    "MLP",
    "MODELS",
    "Block",
    "CausalSelfAttention",
    "TransformerMLP",
    "cnn",
    "get_model",
    "gpt",
    "mlp",
]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}
_NORMS = ("layernorm", "rmsnorm")


def _positive_int(factory: str, arg: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` or raise FactoryError naming ``factory``'s ``arg``.

    ``bool`` is rejected explicitly: it is an ``int`` subclass, so ``width=True`` would
    otherwise silently build a width-1 model.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FactoryError(
            f"{factory}(): argument '{arg}' must be an integer >= {minimum}, got {value!r}; "
            f"pass a whole number such as {max(minimum, 32) if arg == 'width' else minimum}."
        )
    if value < minimum:
        raise FactoryError(f"{factory}(): argument '{arg}' must be >= {minimum}, got {value}; pass a larger value.")
    return int(value)


# --------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------


class MLP(nn.Module):
    """Fully connected classifier: ``input -> act -> hidden.* -> act -> readout``.

    Parameter names are ``input.{weight,bias}``, ``hidden.{i}.{weight,bias}`` and
    ``readout.{weight,bias}``. Input: float tensor ``(B, d_in)``; output: logits
    ``(B, n_classes)``.
    """

    def __init__(
        self,
        width: int,
        *,
        depth: int,
        d_in: int,
        n_classes: int,
        bias: bool,
        activation: str,
    ) -> None:
        super().__init__()
        self.width = width
        self.d_in = d_in
        self.n_classes = n_classes
        self.input = nn.Linear(d_in, width, bias=bias)
        self.hidden = nn.ModuleList(nn.Linear(width, width, bias=bias) for _ in range(depth - 2))
        self.readout = nn.Linear(width, n_classes, bias=bias)
        # Activations are stateless, so one module instance is shared by every layer.
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.input(x))
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.readout(h)


def mlp(
    width: int,
    *,
    depth: int = 3,
    d_in: int = 32,
    n_classes: int = 10,
    bias: bool = True,
    activation: str = "relu",
) -> MLP:
    """Build an :class:`MLP` with ``depth`` linear layers (``depth - 2`` hidden ones).

    Args:
        width: hidden size (number of units), >= 1.
        depth: total number of linear layers including input and readout; default 3,
            must be >= 2.
        d_in: input features; default 32.
        n_classes: output logits; default 10.
        bias: whether the linear layers have biases; default True.
        activation: one of ``"relu"`` (default), ``"gelu"``, ``"tanh"``, ``"silu"``.

    Raises:
        FactoryError: an argument is out of range or the activation is unknown.
    """
    width = _positive_int("mlp", "width", width)
    depth = _positive_int("mlp", "depth", depth, minimum=2)
    d_in = _positive_int("mlp", "d_in", d_in)
    n_classes = _positive_int("mlp", "n_classes", n_classes)
    if activation not in _ACTIVATIONS:
        raise FactoryError(f"mlp(): argument 'activation' is {activation!r}; use one of {sorted(_ACTIVATIONS)}.")
    return MLP(
        width,
        depth=depth,
        d_in=d_in,
        n_classes=n_classes,
        bias=bool(bias),
        activation=activation,
    )


# --------------------------------------------------------------------------------------
# GPT
# --------------------------------------------------------------------------------------


def _make_norm(norm: str, width: int, bias: bool) -> nn.Module:
    if norm == "rmsnorm":
        # RMSNorm has a gain only, so with bias=False the whole model is bias-free.
        return nn.RMSNorm(width)
    return nn.LayerNorm(width, bias=bias)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate ``q_proj``/``k_proj``/``v_proj``.

    The projections are separate (not one fused ``c_attn``) so that the query projection
    can be found by name, e.g. to zero-initialize it under μP. Attention uses
    :func:`torch.nn.functional.scaled_dot_product_attention` with its default
    ``1/sqrt(head_dim)`` scale; μP code changes the scale from outside.
    """

    def __init__(self, width: int, n_head: int, head_dim: int, bias: bool) -> None:
        super().__init__()
        self.n_head = n_head
        self.head_dim = head_dim
        inner = n_head * head_dim
        self.q_proj = nn.Linear(width, inner, bias=bias)
        self.k_proj = nn.Linear(width, inner, bias=bias)
        self.v_proj = nn.Linear(width, inner, bias=bias)
        self.o_proj = nn.Linear(inner, width, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.o_proj(y)


class TransformerMLP(nn.Module):
    """Feed-forward block: GELU MLP (``fc -> gelu -> proj``) or SwiGLU
    (``proj(silu(gate(x)) * fc(x))``)."""

    def __init__(self, width: int, hidden: int, bias: bool, glu: bool) -> None:
        super().__init__()
        self.glu = glu
        self.fc = nn.Linear(width, hidden, bias=bias)
        if glu:
            self.gate = nn.Linear(width, hidden, bias=bias)
        self.proj = nn.Linear(hidden, width, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.glu:
            return self.proj(F.silu(self.gate(x)) * self.fc(x))
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``."""

    def __init__(
        self,
        width: int,
        *,
        n_head: int,
        head_dim: int,
        mlp_hidden: int,
        bias: bool,
        glu: bool,
        norm: str,
    ) -> None:
        super().__init__()
        self.ln1 = _make_norm(norm, width, bias)
        self.attn = CausalSelfAttention(width, n_head, head_dim, bias)
        self.ln2 = _make_norm(norm, width, bias)
        self.mlp = TransformerMLP(width, mlp_hidden, bias, glu)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Pre-LN causal decoder (nanoGPT layout) with learned positional embeddings.

    Input: ``LongTensor (B, T)`` of token ids with ``T <= block_size``; output: logits
    ``(B, T, vocab_size)``. With ``tied=True``, ``lm_head.weight`` *is* ``wte.weight``.
    """

    def __init__(
        self,
        width: int,
        *,
        n_layer: int,
        n_head: int,
        head_dim: int,
        vocab_size: int,
        block_size: int,
        tied: bool,
        mlp_hidden: int,
        bias: bool,
        glu: bool,
        norm: str,
    ) -> None:
        super().__init__()
        self.width = width
        self.n_head = n_head
        self.head_dim = head_dim
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.tied = tied
        self.wte = nn.Embedding(vocab_size, width)
        self.wpe = nn.Embedding(block_size, width)
        self.blocks = nn.ModuleList(
            Block(
                width,
                n_head=n_head,
                head_dim=head_dim,
                mlp_hidden=mlp_hidden,
                bias=bias,
                glu=glu,
                norm=norm,
            )
            for _ in range(n_layer)
        )
        self.ln_f = _make_norm(norm, width, bias)
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        if tied:
            # Module-level tie as in nanoGPT: one Parameter, reported once by parameters().
            self.lm_head.weight = self.wte.weight

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.shape[1]
        if self.block_size < T:
            # Without this check nn.Embedding fails with an opaque "index out of range".
            raise HPTransferError(
                f"GPT.forward(): sequence length {T} exceeds block_size={self.block_size}; "
                "pass shorter inputs or build the model with a larger 'block_size'."
            )
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _glu_hidden(width: int, mlp_ratio: float) -> int:
    """SwiGLU hidden size: ``2/3 * mlp_ratio * width`` rounded *up* to a multiple of 8.

    The 2/3 keeps the parameter count close to the plain MLP (SwiGLU has three matrices);
    rounding up (never to 0) keeps it deterministic and >= 8.
    """
    raw = int(mlp_ratio * 2 / 3 * width)
    return max(8, -(-raw // 8) * 8)


def gpt(
    width: int,
    *,
    n_layer: int = 2,
    n_head: int = 4,
    head_dim: int | None = None,
    vocab_size: int = 256,
    block_size: int = 64,
    tied: bool = False,
    mlp_ratio: float = 4,
    bias: bool = True,
    glu: bool = False,
    norm: str = "layernorm",
) -> GPT:
    """Build a :class:`GPT` with model dimension ``width``.

    Head layout: with ``head_dim=None`` (default) the head count is fixed at ``n_head`` and
    ``head_dim = width // n_head`` grows with width; with an explicit ``head_dim`` the head
    size is fixed and ``n_head = width // head_dim`` grows with width (``n_head`` is then
    ignored).

    Args:
        width: model dimension d_model, >= 1.
        n_layer: number of transformer blocks; default 2.
        n_head: heads when ``head_dim`` is None; default 4; must divide ``width``.
        head_dim: fixed per-head size, or None (default); must divide ``width``.
        vocab_size: tokens in the vocabulary; default 256 (bytes).
        block_size: maximum sequence length (positional-embedding rows); default 64.
        tied: share the token embedding with ``lm_head``; default False.
        mlp_ratio: feed-forward hidden size as a multiple of width; default 4. With
            ``glu=True`` the hidden size is ``2/3 * mlp_ratio * width`` rounded up to a
            multiple of 8.
        bias: biases in linear and LayerNorm layers; default True.
        glu: use a SwiGLU feed-forward (``fc``, ``gate``, ``proj``); default False (GELU).
        norm: ``"layernorm"`` (default) or ``"rmsnorm"``.

    Raises:
        FactoryError: an argument is out of range, or the width is not divisible by
            ``n_head`` / ``head_dim``.
    """
    width = _positive_int("gpt", "width", width)
    n_layer = _positive_int("gpt", "n_layer", n_layer, minimum=0)
    vocab_size = _positive_int("gpt", "vocab_size", vocab_size)
    block_size = _positive_int("gpt", "block_size", block_size)
    if norm not in _NORMS:
        raise FactoryError(f"gpt(): argument 'norm' is {norm!r}; use one of {list(_NORMS)}.")
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, numbers.Real) or mlp_ratio <= 0:
        raise FactoryError(f"gpt(): argument 'mlp_ratio' must be a positive number, got {mlp_ratio!r}.")
    if head_dim is None:
        n_head = _positive_int("gpt", "n_head", n_head)
        if width % n_head != 0:
            raise FactoryError(
                f"gpt(): argument 'width'={width} is not divisible by n_head={n_head}; "
                f"use a width that is a multiple of {n_head}, or pass 'head_dim' to scale "
                "the head count instead."
            )
        head_dim = width // n_head
    else:
        head_dim = _positive_int("gpt", "head_dim", head_dim)
        if width % head_dim != 0:
            raise FactoryError(
                f"gpt(): argument 'width'={width} is not divisible by head_dim={head_dim}; "
                f"use a width that is a multiple of {head_dim}."
            )
        n_head = width // head_dim
    mlp_hidden = _glu_hidden(width, float(mlp_ratio)) if glu else max(1, int(mlp_ratio * width))
    return GPT(
        width,
        n_layer=n_layer,
        n_head=n_head,
        head_dim=head_dim,
        vocab_size=vocab_size,
        block_size=block_size,
        tied=bool(tied),
        mlp_hidden=mlp_hidden,
        bias=bool(bias),
        glu=bool(glu),
        norm=norm,
    )


# --------------------------------------------------------------------------------------
# CNN
# --------------------------------------------------------------------------------------


class CNN(nn.Module):
    """Small conv net: ``conv1 -> relu -> conv2 -> relu -> norm -> global avg pool ->
    readout``.

    Input: float tensor ``(B, in_channels, H, W)`` (any H, W; ``image_size`` is only
    recorded for building example inputs); output: logits ``(B, n_classes)``.
    """

    def __init__(self, width: int, *, in_channels: int, n_classes: int, image_size: int) -> None:
        super().__init__()
        self.width = width
        self.in_channels = in_channels
        self.image_size = image_size
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        # GroupNorm instead of BatchNorm: no running statistics, so behaviour does not
        # depend on batch size or train/eval mode.
        self.norm = nn.GroupNorm(4, width)
        self.readout = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        h = self.norm(h)
        return self.readout(h.mean(dim=(-2, -1)))


def cnn(width: int, *, in_channels: int = 3, n_classes: int = 10, image_size: int = 8) -> CNN:
    """Build a :class:`CNN` with ``width`` channels in both conv layers.

    Args:
        width: conv channels, >= 4 and a multiple of 4 (GroupNorm uses 4 groups).
        in_channels: input image channels; default 3.
        n_classes: output logits; default 10.
        image_size: side length in pixels of the intended square inputs; default 8. The
            network is size-agnostic (global average pooling); this is metadata only.

    Raises:
        FactoryError: an argument is out of range or ``width`` is not a multiple of 4.
    """
    width = _positive_int("cnn", "width", width)
    if width % 4 != 0:
        raise FactoryError(
            f"cnn(): argument 'width'={width} must be a multiple of 4 (GroupNorm uses 4 "
            "groups); round it to a multiple of 4."
        )
    in_channels = _positive_int("cnn", "in_channels", in_channels)
    n_classes = _positive_int("cnn", "n_classes", n_classes)
    image_size = _positive_int("cnn", "image_size", image_size)
    return CNN(width, in_channels=in_channels, n_classes=n_classes, image_size=image_size)


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "gpt": gpt, "cnn": cnn}
"""Reference factories by name, as used in recipes."""


def get_model(name: str) -> Callable[..., nn.Module]:
    """Return the reference factory registered as ``name`` in :data:`MODELS`.

    Raises:
        FactoryError: ``name`` is not registered; the message lists the known names.
    """
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise FactoryError(
            f"unknown model {name!r}; known reference models are: {', '.join(sorted(MODELS))}."
        ) from None
