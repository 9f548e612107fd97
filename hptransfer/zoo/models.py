"""Reference models used by the tests, the recipes and the benchmarks.

Every factory is a plain function whose first positional argument is ``width`` (the
dimension that μP scales); all other arguments are keyword-only with defaults. Factories
return a standard-parametrized PyTorch module with PyTorch's default initializations:
hptransfer rewrites models into μP from the outside, so nothing here knows about μP.

All factories build under ``with torch.device("meta"):`` because ``__init__`` does no
data-dependent work and never passes an explicit ``device=``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FactoryError
from ._args import ACTIVATIONS, positive_int
from ._gpt import GPT, Block, CausalSelfAttention, TransformerMLP, gpt

__all__ = [
    "CNN",
    "GPT",
    "MLP",
    "MODELS",
    "MODEL_TASKS",
    "Block",
    "CausalSelfAttention",
    "TransformerMLP",
    "cnn",
    "get_model",
    "gpt",
    "mlp",
    "ResGLU",
    "resglu",
]

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
        self.act = ACTIVATIONS[activation]()

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
    width = positive_int("mlp", "width", width)
    depth = positive_int("mlp", "depth", depth, minimum=2)
    d_in = positive_int("mlp", "d_in", d_in)
    n_classes = positive_int("mlp", "n_classes", n_classes)
    if activation not in ACTIVATIONS:
        raise FactoryError(f"mlp(): argument 'activation' is {activation!r}; use one of {sorted(ACTIVATIONS)}.")
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
    width = positive_int("cnn", "width", width)
    if width % 4 != 0:
        raise FactoryError(
            f"cnn(): argument 'width'={width} must be a multiple of 4 (GroupNorm uses 4 "
            "groups); round it to a multiple of 4."
        )
    in_channels = positive_int("cnn", "in_channels", in_channels)
    n_classes = positive_int("cnn", "n_classes", n_classes)
    image_size = positive_int("cnn", "image_size", image_size)
    return CNN(width, in_channels=in_channels, n_classes=n_classes, image_size=image_size)


# --------------------------------------------------------------------------------------
# Residual SwiGLU network with RMSNorm
# --------------------------------------------------------------------------------------


class ResGLU(nn.Module):
    """Pre-norm residual classifier: ``input -> [h + glu(rmsnorm(h))] x blocks -> rmsnorm -> readout``.

    Each block is a SwiGLU feed-forward (:class:`TransformerMLP` with ``glu=True``) behind a
    trainable RMSNorm, the layout of current LLM MLPs without attention. Its trainable norm gains
    are a known breaker of LR transfer (Lingle 2024, arXiv:2404.05728): the benchmarks use it to
    measure what μP alone leaves. Parameter names: ``input``, ``blocks.{i}.norm``,
    ``blocks.{i}.mlp.{gate,fc,proj}``, ``norm``, ``readout``.
    """

    def __init__(self, width: int, *, blocks: int, d_in: int, n_classes: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.input = nn.Linear(d_in, width, bias=bias)
        self.blocks = nn.ModuleList(_GLUBlock(width, hidden, bias) for _ in range(blocks))
        self.norm = nn.RMSNorm(width)
        self.readout = nn.Linear(width, n_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.input(x)
        for block in self.blocks:
            h = block(h)
        return self.readout(self.norm(h))


class _GLUBlock(nn.Module):
    def __init__(self, width: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(width)
        self.mlp = TransformerMLP(width, hidden, bias, glu=True)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.mlp(self.norm(h))


def resglu(
    width: int,
    *,
    blocks: int = 2,
    d_in: int = 32,
    n_classes: int = 10,
    mlp_ratio: float = 2.0,
    bias: bool = False,
) -> ResGLU:
    """Build a :class:`ResGLU` with ``blocks`` residual SwiGLU blocks of hidden size
    ``round(mlp_ratio * width)``.

    Args:
        width: residual stream size, >= 1.
        blocks: residual blocks; default 2.
        d_in, n_classes: input features (default 32) and logits (default 10), as :func:`mlp`.
        mlp_ratio: SwiGLU hidden size over width; default 2.0.
        bias: biases on the linear layers; default False (LLM practice).

    Raises:
        FactoryError: an argument is out of range.
    """
    width = positive_int("resglu", "width", width)
    blocks = positive_int("resglu", "blocks", blocks)
    if not (isinstance(mlp_ratio, (int, float)) and mlp_ratio > 0):
        raise FactoryError(f"resglu(): argument 'mlp_ratio' is {mlp_ratio!r}; use a positive number such as 2.0.")
    hidden = max(1, round(float(mlp_ratio) * width))
    return ResGLU(width, blocks=blocks, d_in=positive_int("resglu", "d_in", d_in),
                  n_classes=positive_int("resglu", "n_classes", n_classes), hidden=hidden, bias=bool(bias))


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "gpt": gpt, "cnn": cnn, "resglu": resglu}
"""Reference factories by name, as used in recipes."""

MODEL_TASKS: dict[str, str] = {"mlp": "classification", "gpt": "charlm", "cnn": "images", "resglu": "classification"}
"""The built-in task each reference model trains on (``cnn``: the classification data laid out as images)."""


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
