"""Argument checks and layer choices shared by the reference models."""

from __future__ import annotations

import numbers
from collections.abc import Callable

from torch import nn

from ..errors import FactoryError

__all__ = ["ACTIVATIONS", "NORMS", "positive_int"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}
NORMS = ("layernorm", "rmsnorm")


def positive_int(factory: str, arg: str, value: object, minimum: int = 1) -> int:
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
