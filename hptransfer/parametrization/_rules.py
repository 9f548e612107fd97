"""The registry of parametrizations (rule families).

A parametrization turns a parameter's role and width multipliers (:class:`ParamInfo`) into
numbers: an init rescale of the factory's own draw, a learning-rate multiplier per optimizer
family, a readout multiplier and an attention-scale factor. All multipliers are relative to
the base shape, so at the base width every parametrization here equals SP exactly and values
tuned at the base width mean the same in all of them.

Registered: ``sp``, ``mup`` (width only), ``depth-mup`` (alpha 1/2) and ``completep`` (alpha 1),
which also scale residual branches and block learning rates along depth. New families subclass
:class:`Parametrization` and register with :func:`register_parametrization`; nothing looks rules
up by ``getattr`` on user strings. Methods receive the whole :class:`ParamInfo`, whose
``depth_mult`` carries the depth multiplier of parameters inside a block.
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
    "DepthScaled",
    "DepthMuP",
    "CompleteP",
    "register_parametrization",
    "get_parametrization",
    "available_parametrizations",
    "OPTIMIZER_FAMILIES",
    "is_spectral",
]

#: Optimizer families the rules know, each with its own μP LR rule (relative to the base shape):
#:
#: * ``adam``: updates normalised entrywise (Adam, AdamW, Adamax, RMSprop, Adagrad, Lion-like); hidden
#:   LR x 1/fan_in_mult (Tensor Programs V, arXiv:2203.03466, Table 3).
#: * ``sgd``: updates proportional to the gradient (SGD, ASGD, momentum/Nesterov); hidden LR x
#:   fan_out_mult/fan_in_mult, vector-like LR x width_mult (TP5 Table 3; ``mup.MuSGD``).
#: * ``spectral``: Muon (``"muon"``, :class:`~hptransfer.parametrization.MuonAdamW`): 2-D hidden matrices get
#:   orthogonalised updates whose spectral norm is the LR, scaled by sqrt(fan_out_mult/fan_in_mult) (the
#:   spectral condition, Yang, Simon & Bernstein 2023, arXiv:2310.17813); every other tensor goes to AdamW
#:   under the ``adam`` rule.
OPTIMIZER_FAMILIES: tuple[str, ...] = ("adam", "sgd", "spectral")


def is_spectral(info: ParamInfo, family: str) -> bool:
    """True for a tensor the ``spectral`` family updates with Muon: a 2-D hidden matrix."""
    return family == "spectral" and info.role == "hidden" and len(info.shape) == 2


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
    #: Residual-branch exponent: branches are multiplied by (L_base/L)^alpha. ``None``: the rule
    #: does not scale along depth (a ``depth=`` only builds the model at that depth).
    depth_alpha: ClassVar[float | None] = None

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

    def group_lr_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        """The LR multiplier the optimizer group of this parameter needs: :meth:`lr_mult`, less the factor
        ``lr_form="multipliers"`` moved into the forward (``info.lr_folded``, an Adam factor ``c``). Adam's and
        Muon's updates ignore the gradient's scale, so the group keeps ``lr_mult / c``; an SGD update scales
        with it, so the group needs ``lr_mult / c**2`` (the abc-symmetry, TP5 §J.2.1)."""
        mult = self.lr_mult(info, family, readout_hooked=readout_hooked)
        c = info.lr_folded
        return mult if c == 1.0 else mult / (c * c if family == "sgd" else c)

    def scaled_attention_factor(self, head_dim: int, base_head_dim: int, attn_mult: float, own: float,
                                own_base: float) -> float:
        """Factor on the softmax scale of a module whose own scale is known: ``own`` at this width,
        ``own_base`` at the base width (a Hugging Face ``scaling`` attribute).

        :meth:`attention_factor` assumes the model's own scale is 1/sqrt(d); this corrects for any
        other (T5's 1.0, with 1/sqrt(d) folded into the query init): the default keeps the total
        scale's dependence on d that :meth:`attention_factor` gives a 1/sqrt(d) model. Equal to
        :meth:`attention_factor` when ``own / own_base = sqrt(base_head_dim / head_dim)``.
        """
        own_ratio = (own_base / own) * math.sqrt(base_head_dim / head_dim) if own and own_base else 1.0
        if abs(own_ratio - 1.0) < 1e-12:  # a 1/sqrt(d) model: exactly attention_factor, not a rounding away
            own_ratio = 1.0
        return self.attention_factor(head_dim, base_head_dim, attn_mult) * own_ratio

    def constant_factor(self, ratio: float) -> float:
        """Output multiplier for a module whose output the forward multiplies by a constant that is
        ``ratio`` times its base-width value (``embedding(x) * sqrt(d_model)``: ``ratio = sqrt(d/d_base)``;
        see ``_constants``). Default 1: the model as written (SP)."""
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

    def wd_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        """Weight-decay multiplier in ``coupled`` mode (torch's ``lr * wd`` decay).

        Default ``1 / lr_mult``: ``lr * wd`` stays what it is at the base width (``mup.MuAdamW``).
        """
        return 1.0 / self.lr_mult(info, family, readout_hooked=readout_hooked)

    def branch_multiplier(self, depth_mult: float) -> float:
        """Forward multiplier of a residual branch at ``depth_mult = L / L_base``. Default 1."""
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

    def scaled_attention_factor(self, head_dim: int, base_head_dim: int, attn_mult: float, own: float,
                                own_base: float) -> float:
        return attn_mult  # the model's own scale, whatever it is


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
        if is_spectral(info, family):  # spectral condition, arXiv:2310.17813: ||dW|| ~ sqrt(fan_out/fan_in)
            return math.sqrt(info.fan_out_mult / info.fan_in_mult)
        if family in ("adam", "spectral"):
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

    def constant_factor(self, ratio: float) -> float:
        # The rules hold for each layer's own output; a width-dependent constant on top of it is
        # held at its base-width value, where the model is the user's (a fixed multiplier is a
        # reparametrization the rules leave alone).
        return 1.0 / ratio

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
        if is_spectral(info, family):
            return 1.0  # Muon has no Adam epsilon
        if info.role == "hidden" or (info.role == "output" and not readout_hooked):
            return 1.0 / info.fan_in_mult
        return 1.0


class DepthScaled(MuP):
    """μP across width plus residual-branch scaling across depth, with exponent ``alpha``.

    Dey et al. 2025 (CompleteP, arXiv:2505.01618) write a block as
    ``h_{l+1} = h_l + (L_base/L)^alpha F_l(h_l)``; with m_d the width multiplier and
    m_L = L / L_base the depth multiplier (``ParamInfo.depth_mult``, 1 outside the blocks):

    ==========================  =====================================  ==========================
    parameters in a block       Adam family                            SGD family
    ==========================  =====================================  ==========================
    hidden weights: LR          μP x m_L^(alpha - 1)  (Muon: same)      μP x m_L^(2 alpha - 1)
    norm gains, biases: LR      x m_L^(alpha - 1)                      x m_L^(2 alpha - 1)
    Adam epsilon                μP x m_L^-alpha  (= m_d^-1 m_L^-alpha) --
    weight decay (coupled)      x m_d (the width part only)            x m_d
    ==========================  =====================================  ==========================

    The Adam column is CompleteP's Table 1 (and, at alpha = 1/2, depth-μP's 1/sqrt(L) Adam
    update, Yang et al. 2023, arXiv:2310.02244). The SGD column is derived the same way: a
    branch multiplied by m_L^-alpha gets gradients x m_L^-alpha, so an SGD update moves its
    output by lr x m_L^(-2 alpha); a per-block contribution of 1/L needs lr x m_L^(2 alpha - 1)
    (constant at alpha = 1/2, as in Tensor Programs VI). Weight decay in ``coupled`` mode follows
    CompleteP's "hidden weight decay x m_d": the group's wd is divided by the width part of its LR
    multiplier only, so ``lr * wd`` shrinks with depth like the LR. Parameters outside the blocks
    (embeddings, readout, final norm) follow μP. At L = L_base everything equals μP exactly.
    """

    citation = "Dey et al. 2025, CompleteP, arXiv:2505.01618, Table 1"

    def _depth_factor(self, info: ParamInfo, family: str) -> float:
        alpha = float(self.depth_alpha or 0.0)
        if info.depth_mult == 1.0:
            return 1.0
        # Adam and Muon updates do not scale with the gradient's size; SGD's do.
        return info.depth_mult ** ((alpha - 1.0) if family in ("adam", "spectral") else (2.0 * alpha - 1.0))

    def lr_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        return super().lr_mult(info, family, readout_hooked=readout_hooked) * self._depth_factor(info, family)

    def eps_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        return super().eps_mult(info, family, readout_hooked=readout_hooked) * info.depth_mult ** -float(
            self.depth_alpha or 0.0)

    def wd_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
        return 1.0 / super().lr_mult(info, family, readout_hooked=readout_hooked)

    def branch_multiplier(self, depth_mult: float) -> float:
        return depth_mult ** -float(self.depth_alpha or 0.0)


@register_parametrization("depth-mup")
class DepthMuP(DepthScaled):
    """Depth-μP: μP in width, residual branches x (L_base/L)^(1/2), block Adam LR x (L/L_base)^(-1/2).

    Yang et al. 2023, Tensor Programs VI (arXiv:2310.02244); Bordelon et al. 2023 (arXiv:2309.16620).
    Rules: :class:`DepthScaled` with alpha = 1/2.
    """

    citation = "Yang et al. 2023, Tensor Programs VI, arXiv:2310.02244; Bordelon et al. 2023, arXiv:2309.16620"
    depth_alpha = 0.5


@register_parametrization("completep")
class CompleteP(DepthScaled):
    """CompleteP: μP in width, residual branches x L_base/L, block Adam LR unchanged in depth
    (m_L^0), Adam epsilon x m_d^-1 m_L^-1. Dey et al. 2025 (arXiv:2505.01618), alpha = 1.
    Rules: :class:`DepthScaled` with alpha = 1.
    """

    citation = "Dey et al. 2025, CompleteP, arXiv:2505.01618, Table 1 (alpha = 1)"
    depth_alpha = 1.0
