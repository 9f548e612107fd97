"""Init detection: how does the factory's own init draw scale with width?

Most language-model code (Hugging Face models, nanoGPT, most LLM codebases) draws weights from
N(0, 0.02^2) at every width instead of PyTorch's variance-1/fan_in default. μP's rules are
stated relative to the 1/fan_in ("SP", PyTorch default) draw (Tensor Programs V, Yang et al.
2022, arXiv:2203.03466, Table 8; shared/RULES.md "Init"), so treating a constant draw as SP
leaves hidden weights a factor sqrt(m) too large at m times the base width.

Instead of guessing, hptransfer measures: it builds the factory for real at the base width and
at the probe width (small models, under a private RNG so the user's RNG is untouched) and
compares each parameter's root-mean-square init between the two. The ratio, as a power of the
growth of the parameter's fan-in (or of its own width axis when its fan-in is fixed), is the
init law's exponent ``a``:

=============  ===============================================  ==============================
class          exponent                                         example
=============  ===============================================  ==============================
``fan_in``     -1/2 against a growing fan-in                    PyTorch's default, kaiming
``constant``   0                                                N(0, 0.02^2), LayerNorm ones
``zero``       the tensor is all zeros at both widths           zero biases, zero readouts
``structured`` anything else (the measured ``a`` is used as is)  Xavier on an input layer
``fixed``      nothing about the tensor grows with width        a scalar gain
=============  ===============================================  ==============================

The correction that turns the factory's draw into the SP-equivalent draw at a width multiplier
``m`` is ``m ** (a_sp - a)`` (``a_sp`` = -1/2 against a growing fan-in, else 0). It is exactly
1.0 at the base width (``m = 1``), so the rewritten model is bit-identical to the factory's
there, and it multiplies the user's own draw, so any depth factor (nanoGPT's c_proj std
0.02/sqrt(2 n_layer)) and any zeros are kept.
"""

from __future__ import annotations

import functools
import math
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..errors import ParametrizationError
from ._rules import Parametrization
from ._shapes import build, collect_usages, fan_axes, match_any
from ._table import ParamInfo, ScalingTable

__all__ = ["INIT_CLASSES", "measure_init_laws", "rescale_init", "layer_biases", "clear_cache", "factory_key"]

INIT_CLASSES: tuple[str, ...] = ("fan_in", "constant", "zero", "structured", "fixed", "unmeasured")

#: An exponent within this distance of -1/2 or 0 is snapped to the nearer one (half their gap).
#: The pooled RMS of >= 4096 draws has a relative error of about 1%, i.e. an exponent error of
#: about 0.03 for a 2x probe; a 10-entry bias pooled over 32 draws about 0.06.
_SNAP_TOL = 0.25
#: Draws pooled per parameter (the base-width models are rebuilt until each tensor has this many
#: entries, at most _MAX_REPS times), so small biases are classified as reliably as matrices.
_MIN_SAMPLES = 4096
_MAX_REPS = 32
#: At most this many entries are drawn for the measurement (about 0.2 s of init on one core);
#: models larger than that are measured from one draw (small tensors then classify less surely).
_MAX_DRAWN = 20_000_000
_SEED = 20240501


def layer_biases(model: nn.Module) -> dict[str, str]:
    """Bias name -> weight name of its ``nn.Linear`` / conv layer."""
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, str] = {}
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            continue
        bias, weight = module.bias, module.weight
        if isinstance(bias, nn.Parameter) and id(bias) in names and id(weight) in names:
            out[names[id(bias)]] = names[id(weight)]
    return out


@torch.no_grad()
def measure_init_laws(
    factory: Callable[..., nn.Module],
    model: nn.Module,
    params: dict[str, ParamInfo],
    *,
    base_width: float,
    probe_width: float,
) -> dict[str, ParamInfo]:
    """``params`` with ``init_class``, ``init_exponent``, ``init_rms`` and ``sp_correction`` filled in.

    ``model`` is the target-width model (already built); the factory is called ``2 x reps`` more
    times on the CPU at ``base_width`` and ``probe_width``. The global RNG state is restored
    afterwards, so measuring changes nothing the user can observe.
    """
    refs = _references(model, params)
    key = _cache_key(factory, base_width, probe_width, refs)
    found = _CACHE.get(key) if key is not None else None
    if found is None:
        found = _measure(factory, params, refs, base_width, probe_width)
        if found is None:
            return dict(params)  # the factory hands out cached meta models: nothing to measure
        if key is not None:
            _CACHE[key] = found
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    sq_base, sq_probe, shapes = found
    if not set(params) <= set(sq_base):
        sq_base, sq_probe, shapes = _measure(factory, params, refs, base_width, probe_width) or found
    out = dict(params)
    for name, info in params.items():
        rms0, rms1 = math.sqrt(sq_base[name]), math.sqrt(sq_probe[name])
        ref = refs.get(name)
        if ref is None:
            cls, a, corr = ("zero" if rms0 == rms1 == 0.0 else "fixed"), None, 1.0
        else:
            (axis_owner, axis), a_sp, m = ref
            (b_shape, p_shape) = shapes[axis_owner]
            r = p_shape[axis] / b_shape[axis]
            cls, a = _classify(rms0, rms1, r, a_sp)
            corr = 1.0 if a is None or m == 1.0 else m ** (a_sp - a)
        out[name] = replace(info, init_class=cls, init_exponent=a, init_rms=rms0, sp_correction=corr)
    return out


#: Measurements by factory and widths: a model is parametrized at every width and seed of a sweep or a
#: coordinate check, and each time the factory is built 2 to 64 more times to measure its init. The
#: draws are seeded (``_SEED``), so one factory at one pair of widths measures the same every time.
_CACHE: OrderedDict[Hashable, tuple[dict[str, float], dict[str, float], dict[str, Any]]] = OrderedDict()
_CACHE_SIZE = 32


def clear_cache() -> None:
    """Forget every stored init measurement (the next parametrize measures again)."""
    _CACHE.clear()


def _cache_key(factory: Any, base_width: float, probe_width: float, refs: dict[str, Any]) -> Hashable | None:
    """What identifies a measurement, or ``None`` (not stored) for a factory whose models could differ
    between calls at the same width: one that is not a plain function or class (a callable object holding
    mutable state, such as a Hugging Face config), unless it says what it builds (``cache_key()``)."""
    fac = factory_key(factory)
    if fac is None:
        return None
    return (fac, float(base_width), float(probe_width), torch.get_default_dtype(), frozenset(refs))


def factory_key(factory: Any) -> Hashable | None:
    """A hashable key of the models ``factory`` builds: the function or class itself, a
    ``functools.partial``'s function and arguments, or an object's own ``cache_key()``; ``None`` when
    none can be given (unhashable arguments, a callable object of unknown state)."""
    key: Hashable | None
    if isinstance(factory, functools.partial):
        inner = factory_key(factory.func)
        key = None if inner is None else (inner, factory.args, tuple(sorted(factory.keywords.items())))
    elif callable(getattr(factory, "cache_key", None)):
        key = factory.cache_key()
    elif isinstance(factory, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)):
        key = factory
    else:
        return None
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _measure(factory: Callable[..., nn.Module], params: dict[str, ParamInfo], refs: dict[str, Any],
             base_width: float, probe_width: float) -> tuple[dict[str, float], dict[str, float], dict[str, Any]] | None:
    """Mean squares of every parameter at the base and probe widths (averaged over seeded draws) and
    the shapes; ``None`` when the factory builds meta models."""
    sums: dict[str, list[float]] = {}  # sum of mean squares at base, probe
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    reps, rep = 1, 0
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        while rep < reps:
            torch.manual_seed(_SEED + rep)
            base = dict(build(factory, base_width, meta=False, what="base (init measurement)").named_parameters())
            probe = dict(build(factory, probe_width, meta=False, what="probe (init measurement)").named_parameters())
            if any(t.is_meta for t in (*base.values(), *probe.values())):
                return None
            for name in params:
                pair = sums.setdefault(name, [0.0, 0.0])
                pair[0] += float(base[name].double().pow(2).mean())
                pair[1] += float(probe[name].double().pow(2).mean())
            if rep == 0:
                shapes = {n: (tuple(base[n].shape), tuple(probe[n].shape)) for n in base}
                # Small random tensors (biases) need more draws for the same precision; constant
                # ones (zeros, LayerNorm gains) need none.
                random = [base[n].numel() for n in refs if base[n].numel() > 1 and float(base[n].std()) > 0]
                reps = max(1, min(_MAX_REPS, math.ceil(_MIN_SAMPLES / min(random, default=_MIN_SAMPLES))))
                # ... within a budget of drawn entries, so a large base model is built once more at most.
                drawn = sum(t.numel() for t in (*base.values(), *probe.values()))
                reps = max(1, min(reps, _MAX_DRAWN // max(1, drawn)))
            rep += 1
    return {n: v[0] / reps for n, v in sums.items()}, {n: v[1] / reps for n, v in sums.items()}, shapes


def _classify(rms0: float, rms1: float, r: float, a_sp: float) -> tuple[str, float | None]:
    """(class, exponent) of an init whose RMS is ``rms0`` at the base and ``rms1`` at ``r`` x the axis size."""
    if rms0 == 0.0 and rms1 == 0.0:
        return "zero", None
    if rms0 == 0.0 or rms1 == 0.0 or r == 1.0:
        return "structured", None  # zero at one width only: no power law; keep the draw as it is
    a = math.log(rms1 / rms0) / math.log(r)
    if abs(a - a_sp) <= _SNAP_TOL and abs(a - a_sp) <= abs(a):
        return ("fan_in" if a_sp != 0.0 else "constant"), a_sp
    if abs(a) <= _SNAP_TOL:
        return "constant", 0.0
    return "structured", a


def _references(
    model: nn.Module, params: dict[str, ParamInfo]
) -> dict[str, tuple[tuple[str, int], float, float]]:
    """Per parameter: ((name, axis) whose growth the init is measured against, a_sp, target multiplier).

    A weight whose fan-in grows is measured against its fan-in (SP: exponent -1/2); the bias of a
    linear/conv layer against its weight's fan-in (PyTorch's default bias is U(+-1/sqrt(fan_in)));
    anything else with a width axis against that axis (SP: exponent 0), including a raw 2-D tensor
    whose layout looks like a weight's but whose fan-in the role inference found fixed (a table). Parameters with no
    growing axis and no such layer are left out (nothing to measure).
    """
    usages = collect_usages(model)
    biases = layer_biases(model)
    out: dict[str, tuple[tuple[str, int], float, float]] = {}
    for name, info in params.items():
        weight = biases.get(name)
        if weight is not None:
            w_info, w_usage = params[weight], usages[weight][1][0]
            if w_usage.fan_in_axis in w_info.width_axes:
                out[name] = ((weight, w_usage.fan_in_axis), -0.5, w_info.fan_in_mult)
                continue
        _, fan_in_axis = fan_axes(usages[name][1][0], info.width_axes)
        if info.fan_in_mult == 1.0 and fan_in_axis in info.width_axes:
            # PyTorch's layout says the growing axis is a fan-in, but the forward never contracts it (a raw
            # positional table added or indexed, found by _usage): a table, whose SP draw is constant, as
            # nn.Embedding's is. Measured against that axis with exponent 0 below.
            fan_in_axis = None
        if len(info.shape) >= 2 and fan_in_axis in info.width_axes:
            out[name] = ((name, fan_in_axis), -0.5, info.shape[fan_in_axis] / info.base_shape[fan_in_axis])
        elif info.width_axes:
            axis = info.width_axes[0]
            out[name] = ((name, axis), 0.0, info.shape[axis] / info.base_shape[axis])
    return out


_QUERY_NAMES = ("q_proj", "query", "wq", "to_q", "q")


@torch.no_grad()
def rescale_init(model: nn.Module, table: ScalingTable, rule: Parametrization) -> None:
    """Rescale (or, with ``base_std``, redraw) the init of ``model`` in place per ``rule``.

    The factor of each tensor is ``rule.init_correction(info)`` (the measured factory law to the
    SP law) times ``rule.init_scale`` (or ``rule.bias_scale`` for a layer bias); it is recorded
    in the table as ``init_scale``.
    """
    opts = table.options
    tensors = dict(model.named_parameters())
    biases = {b: table.params[w] for b, w in layer_biases(model).items()}
    query = _query_targets(model, table, opts["zero_query"])
    readout_biases = {n for n, w in biases.items() if w.readout_module is not None and w.role == "output"}
    # zero_readout zeroes the model's readout: the hooked one, or a raw one read out in place when
    # nothing is hooked. Not a router or bottleneck (an output weight inside the network): zeroed, a
    # router's logits tie and top-k routing sends every token to the same experts.
    any_hooked = any(i.readout_module is not None and i.role == "output" for i in table.params.values())
    for name, info in list(table.params.items()):
        p = tensors[name]
        hooked = info.readout_module is not None and info.role == "output"
        scale = rule.bias_scale(biases[name]) if name in biases else rule.init_scale(info, readout_hooked=hooked)
        if opts["base_std"] is not None and p.ndim >= 2 and info.role != "scalar":
            sp_law = 1.0 / math.sqrt(info.fan_in_mult) if info.role in ("hidden", "output") else 1.0
            p.normal_(0.0, opts["base_std"] * sp_law * scale)
        else:
            scale *= rule.init_correction(info)
            if scale != 1.0:
                p.mul_(scale)
        zero = False
        if opts["zero_readout"] and ((info.role == "output" and (hooked or not any_hooked)) or name in readout_biases):
            zero = True
        if opts["zero_readout"] and info.readout_module is not None and info.role != "output":
            raise ParametrizationError(
                f"zero_readout=True would zero {name!r}, which is tied to the input embedding "
                f"({', '.join(info.tied_to)}). Fix: untie the readout or drop zero_readout."
            )
        if zero:
            p.zero_()
        if name in query:
            rows = query[name]
            (p if rows is None else p[:rows]).zero_()
            zero = True
        table.params[name] = replace(info, init_scale=scale, zero_init=zero)


def _query_targets(model: nn.Module, table: ScalingTable, zero_query: Any) -> dict[str, int | None]:
    """Parameter name -> rows to zero (``None`` = all) for the query projection."""
    if zero_query is False:
        return {}
    targets: dict[str, int | None] = {}
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention) and (zero_query is True or match_any(mod_name, zero_query)):
            prefix = f"{mod_name}." if mod_name else ""
            if module.in_proj_weight is not None:
                targets[prefix + "in_proj_weight"] = module.embed_dim
            else:
                targets[prefix + "q_proj_weight"] = None
            if module.in_proj_bias is not None:
                targets[prefix + "in_proj_bias"] = module.embed_dim
    for name in table.params:
        parts = name.split(".")
        if zero_query is True:
            if len(parts) >= 2 and parts[-2] in _QUERY_NAMES:
                targets.setdefault(name, None)
        elif match_any(name, zero_query):
            targets.setdefault(name, None)
    if not targets:
        raise ParametrizationError(
            f"zero_query={zero_query!r} matches no query projection. Fix: pass glob patterns of the query "
            "weight and bias names, e.g. zero_query=['blocks.*.attn.q_proj.*']."
        )
    return targets
