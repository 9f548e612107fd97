"""The reference GPT: pre-LN decoder with SDPA attention, optional GLU MLP and RMSNorm, tied readout option."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DataError, FactoryError
from ._args import NORMS, positive_int

__all__ = ["GPT", "Block", "CausalSelfAttention", "TransformerMLP", "gpt"]


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
            raise DataError(
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
    width = positive_int("gpt", "width", width)
    n_layer = positive_int("gpt", "n_layer", n_layer, minimum=0)
    vocab_size = positive_int("gpt", "vocab_size", vocab_size)
    block_size = positive_int("gpt", "block_size", block_size)
    if norm not in NORMS:
        raise FactoryError(f"gpt(): argument 'norm' is {norm!r}; use one of {list(NORMS)}.")
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, numbers.Real) or mlp_ratio <= 0:
        raise FactoryError(f"gpt(): argument 'mlp_ratio' must be a positive number, got {mlp_ratio!r}.")
    if head_dim is None:
        n_head = positive_int("gpt", "n_head", n_head)
        if width % n_head != 0:
            raise FactoryError(
                f"gpt(): argument 'width'={width} is not divisible by n_head={n_head}; "
                f"use a width that is a multiple of {n_head}, or pass 'head_dim' to scale "
                "the head count instead."
            )
        head_dim = width // n_head
    else:
        head_dim = positive_int("gpt", "head_dim", head_dim)
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
