"""The registry of parametrizations (rule families).

A parametrization turns a parameter's role and width multipliers (:class:`ParamInfo`) into
numbers: an init rescale of the factory's own draw, a learning-rate multiplier per optimizer
family, a readout multiplier and an attention-scale factor. All multipliers are relative to
the base shape, so at the base width every parametrization here equals SP exactly and values
tuned at the base width mean the same in all of them.

New families (depth-μP, CompleteP, spectral rules for Muon) subclass :class:`Parametrization`
and register with :func:`register_parametrization`; nothing looks rules up by ``getattr`` on
user strings. Methods receive the whole :class:`ParamInfo`, so a depth-aware rule can read
depth multipliers from it once the table carries them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, TypeVar

from ..errors import OptimizerConfigError, ParametrizationError
from ._table import ParamInfo

__all__ = [
    "Parametrization",
    "SP",
    "MuP",
    "register_parametrization",
    "get_parametrization",
    "available_parametrizations",
    "OPTIMIZER_FAMILIES",
]

#: Optimizer families the rules know. ``adam``: updates normalised entrywise (Adam, AdamW,
#: Adamax, RMSprop, Adagrad, Lion-like). ``sgd``: updates proportional to the gradient (SGD,
#: ASGD, SGD with momentum/Nesterov).
OPTIMIZER_FAMILIES: tuple[str, ...] = ("adam", "sgd")


class Parametrization(ABC):
    """A rule family. Subclasses set ``name`` and ``citation`` and implement the hooks.

    Lifecycle: :func:`hptransfer.parametrize` infers a :class:`ParamInfo` per parameter, then
    calls :meth:`init_scale` (once, at build time), :meth:`readout_multiplier` and
    :meth:`attention_factor`; :func:`hptransfer.param_groups` calls :meth:`lr_mult` and
    :meth:`eps_mult` whenever optimizer groups are built. Methods must be pure functions of
    their arguments so that tables and groups can be rebuilt identically.
    """

    name: ClassVar[str]
    citation: ClassVar[str]

    @abstractmethod
    def init_scale(self, info: ParamInfo, *, readout_hooked: bool) -> float:
        """Factor applied to the factory's init draw of this parameter (1.0 = keep)."""

    @abstractmethod
    def lr_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        """Learning-rate multiplier for this parameter under an optimizer ``family``."""

    @abstractmethod
    def readout_multiplier(self, info: ParamInfo, output_mult: float) -> float:
        """Forward multiplier on the input of a readout module that uses this parameter."""

    @abstractmethod
    def attention_factor(self, head_dim: int, base_head_dim: int, attn_mult: float) -> float:
        """Factor on the attention softmax scale for a runtime head dimension."""

    def eps_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        """Adam epsilon multiplier (used only when eps scaling is switched on). Default 1."""
        return 1.0

    def init_correction(self, info: ParamInfo) -> float:
        """Factor applied to the factory's draw *before* :meth:`init_scale` / :meth:`bias_scale`.

        Default 1.0: the factory's draw is kept as the user wrote it (SP). A rule stated relative
        to the SP (variance 1/fan_in) init returns ``info.sp_correction``, the measured factor that
        turns the factory's draw (constant 0.02, depth-scaled, ...) into that init at this width.
        """
        return 1.0

    def bias_scale(self, weight: ParamInfo) -> float:
        """Init factor for the bias of a linear or conv layer whose weight is ``weight``."""
        return 1.0

    def check_family(self, family: str) -> None:
        if family not in OPTIMIZER_FAMILIES:
            raise OptimizerConfigError(
                f"optimizer family {family!r} is unknown to parametrization {self.name!r}. "
                f"Fix: use one of {', '.join(OPTIMIZER_FAMILIES)}."
            )


_REGISTRY: dict[str, type[Parametrization]] = {}
P = TypeVar("P", bound=type[Parametrization])


def register_parametrization(name: str) -> Callable[[P], P]:
    """Class decorator adding a :class:`Parametrization` subclass to the registry under ``name``."""

    def deco(cls: P) -> P:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ParametrizationError(f"a parametrization named {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def get_parametrization(name: str | Parametrization) -> Parametrization:
    """An instance of the registered parametrization ``name`` (instances pass through)."""
    if isinstance(name, Parametrization):
        return name
    key = str(name).lower().replace("µ", "mu").replace("μ", "mu")
    if key not in _REGISTRY:
        raise ParametrizationError(
            f"unknown parametrization {name!r}. Fix: use one of {', '.join(available_parametrizations())}."
        )
    return _REGISTRY[key]()


def available_parametrizations() -> list[str]:
    return sorted(_REGISTRY)


@register_parametrization("sp")
class SP(Parametrization):
    """Standard parametrization: the factory's init and one global learning rate.

    The output and attention multipliers still apply as plain constants, so that a value
    tuned under SP at the base width means the same as under μP there.
    Reference: the SP column of Tensor Programs V (Yang et al. 2022, arXiv:2203.03466), Table 3.
    """

    citation = "Yang et al. 2022, Tensor Programs V, arXiv:2203.03466, Table 3 (SP column)"

    def init_scale(self, info: ParamInfo, *, readout_hooked: bool) -> float:
        return 1.0

    def lr_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        self.check_family(family)
        return 1.0

    def readout_multiplier(self, info: ParamInfo, output_mult: float) -> float:
        return output_mult

    def attention_factor(self, head_dim: int, base_head_dim: int, attn_mult: float) -> float:
        return attn_mult


@register_parametrization("mup")
class MuP(Parametrization):
    """Maximal Update Parametrization, relative to the base shapes.

    Tensor Programs V (Yang et al. 2022, arXiv:2203.03466), Table 8 form, as implemented by
    the ``mup`` package 1.0.0 (``MuReadout``, ``MuAdam``, ``MuSGD``); m = fan-in (or fan-out)
    multiplier relative to the base shape:

    ======================  ==================  ===========  ===================
    role                    init (x factory)    Adam LR      SGD LR
    ======================  ==================  ===========  ===================
    input-like and biases   1                   1            fan_out_mult
    hidden                  1                   1/fan_in_m   fan_out_m/fan_in_m
    readout (hooked)        sqrt(m), fwd x 1/m  1            m
    readout (in place)      1/sqrt(m)           1/m          1/m
    scalar                  1                   1            1
    ======================  ==================  ===========  ===================

    The table's init column is relative to the SP draw (variance 1/fan_in, PyTorch's default).
    The factory's own draw is first brought to it by the measured ``sp_correction`` (a constant
    0.02 draw, as in Hugging Face models and nanoGPT, is multiplied by 1/sqrt(m) on hidden
    weights; a PyTorch-default draw by 1), so on PyTorch-default models only the readout weight
    changes; biases of linear and conv layers are multiplied by
    sqrt(fan_in_mult) of their weight, which turns PyTorch's width-shrinking default bias
    init into a width-independent one (as ``mup.set_base_shapes`` does). A readout that is a raw
    tensor of an unknown module is read out "in place" in the Table 3 form, which the
    abc-symmetry makes equivalent under Adam. Attention logits use 1/d (sqrt(d_base)/d
    relative to 1/sqrt(d)). With eps scaling on, Adam's epsilon shrinks like the hidden
    gradients, 1/fan_in_mult (Everett et al. 2024, arXiv:2407.05872).
    """

    citation = "Yang et al. 2022, Tensor Programs V, arXiv:2203.03466, Tables 3 and 8; mup 1.0.0"

    def init_scale(self, info: ParamInfo, *, readout_hooked: bool) -> float:
        if info.role != "output":
            return 1.0
        m = info.fan_in_mult
        return math.sqrt(m) if readout_hooked else 1.0 / math.sqrt(m)

    def lr_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        self.check_family(family)
        role = info.role
        if family == "adam":
            if role == "hidden":
                return 1.0 / info.fan_in_mult
            if role == "output" and not readout_hooked:
                return 1.0 / info.fan_in_mult
            return 1.0
        # SGD family (mup.MuSGD): vector-like LR x width_mult, matrix-like LR / (fan_in/fan_out).
        if role == "hidden":
            return info.fan_out_mult / info.fan_in_mult
        if role == "output":
            return info.fan_in_mult if readout_hooked else 1.0 / info.fan_in_mult
        if role == "input":
            return info.width_mult
        return 1.0

    def readout_multiplier(self, info: ParamInfo, output_mult: float) -> float:
        # A tied readout (role "input") reads out through its embedding dim: use the main mult.
        return output_mult / info.width_mult

    def attention_factor(self, head_dim: int, base_head_dim: int, attn_mult: float) -> float:
        return attn_mult * math.sqrt(base_head_dim / head_dim)

    def init_correction(self, info: ParamInfo) -> float:
        # μP's init rules are relative to the SP draw (Table 8); a constant-std factory draw
        # (HF, nanoGPT) is first brought to it, measured per parameter (see _init_law).
        return info.sp_correction

    def bias_scale(self, weight: ParamInfo) -> float:
        # PyTorch draws a linear/conv bias from U(+-1/sqrt(fan_in)), which shrinks as fan-in
        # grows; μP wants biases of constant size, so undo the shrink (mup 1.0.0 does the same
        # in set_base_shapes: rescale_linear_bias and MuReadout._rescale_parameters).
        return math.sqrt(weight.fan_in_mult)

    def eps_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        if info.role == "hidden" or (info.role == "output" and not readout_hooked):
            return 1.0 / info.fan_in_mult
        return 1.0
