"""Models written the way people write them, for tests that parametrize them with default options.

* :class:`NanoGPT`: karpathy/nanoGPT ``model.py`` style: its own N(0, 0.02^2) init, ``c_proj``
  drawn with std 0.02/sqrt(2 n_layer), zero biases, the readout tied to the token embedding,
  a fused ``c_attn``, SDPA (or, with ``flash=False``, a hand-written softmax attention with a
  registered ``tril`` buffer) and ``targets.view(-1)`` in the loss.
* :class:`ForwardMaskLM`: a byte LM that builds its causal mask in ``forward`` with
  ``torch.ones(T, T)`` (no ``device=``) and checks it with ``.item()`` and ``torch.equal``.
* :class:`TutorialLM`: the model of PyTorch's "Language Modeling with nn.Transformer" tutorial:
  ``embedding(src) * math.sqrt(d_model)``, a sinusoidal positional-encoding buffer, post-norm
  ``nn.TransformerEncoder`` and a linear decoder, uniform(-0.1, 0.1) init (batch first here).
* :class:`ScaledEmbedding`: an embedding that multiplies its own output by a ``sqrt(dim)`` buffer, as
  Gemma's ``GemmaTextScaledWordEmbedding`` does.

Shared by several test modules (no test module imports another).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GPTConfig:
    block_size: int = 16
    vocab_size: int = 256
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    bias: bool = True
    flash: bool = True  # SDPA; False: softmax(q @ k^T / sqrt(d)) written by hand


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head, self.n_embd, self.flash = config.n_head, config.n_embd, config.flash
        if not self.flash:
            mask = torch.tril(torch.ones(config.block_size, config.block_size))
            self.register_buffer("bias", mask.view(1, 1, config.block_size, config.block_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):  # GPT-2's residual-projection scaling
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        _, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:  # nanoGPT forks that train through a separate loss return the logits alone
            return logits
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def nanogpt(width: int, *, flash: bool = True, n_head: int = 2) -> NanoGPT:
    """nanoGPT at ``n_embd = width`` with a fixed head count (the head dimension grows with width)."""
    return NanoGPT(GPTConfig(n_embd=width, n_head=n_head, flash=flash))


def nanogpt_eager(width: int) -> NanoGPT:
    """nanoGPT with its hand-written (non-SDPA) attention."""
    return nanogpt(width, flash=False)


class ForwardMaskLM(nn.Module):
    """A byte LM whose forward does what meta tensors cannot: it checks its input with ``.item()``,
    makes its causal mask with ``torch.ones(T, T)`` (no ``device=``) and checks it with ``torch.equal``."""

    def __init__(self, width: int, vocab: int = 256, heads: int = 2):
        super().__init__()
        self.heads, self.vocab = heads, vocab
        self.embed = nn.Embedding(vocab, width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if idx.max().item() >= self.vocab:
            raise ValueError("token id out of range")
        x = self.embed(idx)
        mask = torch.tril(torch.ones(T, T)).bool()
        if not torch.equal(mask, mask.tril()):
            raise RuntimeError("mask is not causal")
        q, k, v = (t.view(B, T, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, -1))
        return self.head(self.norm(x))


def torch_transformer(width: int) -> nn.Transformer:
    """torch's encoder-decoder ``nn.Transformer`` (batch first, 2 heads: the head dim grows)."""
    return nn.Transformer(d_model=width, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                          dim_feedforward=2 * width, dropout=0.0, batch_first=True)


class PositionalEncoding(nn.Module):
    """Sinusoidal positions added to the input (Vaswani et al. 2017), as the tutorial's."""

    def __init__(self, d_model: int, max_len: int = 256):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(1, max_len, d_model)
        pe[0, :, 0::2] = torch.sin(position * div_term)
        pe[0, :, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.size(1)]


class TutorialLM(nn.Module):
    """PyTorch's nn.Transformer language-modelling tutorial model (see the module docstring)."""

    def __init__(self, width: int, vocab: int = 256, heads: int = 2, layers: int = 2):
        super().__init__()
        self.d_model = width
        self.embedding = nn.Embedding(vocab, width)
        self.pos_encoder = PositionalEncoding(width)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True)
        self.transformer_encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.linear = nn.Linear(width, vocab)
        self.embedding.weight.data.uniform_(-0.1, 0.1)
        self.linear.bias.data.zero_()
        self.linear.weight.data.uniform_(-0.1, 0.1)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        src = self.embedding(src) * math.sqrt(self.d_model)
        src = self.pos_encoder(src)
        mask = nn.Transformer.generate_square_subsequent_mask(src.size(1), device=src.device)
        return self.linear(self.transformer_encoder(src, mask, is_causal=True))


class ScaledEmbedding(nn.Embedding):
    """An embedding scaled by a ``sqrt(dim)`` buffer inside its own forward (Gemma's)."""

    def __init__(self, vocab: int, dim: int):
        super().__init__(vocab, dim)
        self.register_buffer("embed_scale", torch.tensor(dim**0.5), persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return super().forward(idx) * self.embed_scale.to(self.weight.dtype)
