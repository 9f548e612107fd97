"""``parametrize``: build the user's model at a width and rewrite it into a width-stable form.

Nothing in the model's source changes. The rewrite is: (1) an init rescale of the factory's
own draw (or a fresh draw from ``base_std``), (2) forward multipliers by hook on readout
modules, (3) attention-scale rewriting inside attention modules (see ``_attention``), and (4) a
:class:`~hptransfer.parametrization.ScalingTable` attached to the root module, from which
:func:`hptransfer.param_groups` later derives per-parameter learning rates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import replace
from typing import Any, cast

import torch
from torch import nn

from ..errors import ParametrizationError
from . import _attention
from ._args import check_depths, check_widths
from ._constants import scale_width_constants
from ._depth import AtDepth, setup_depth
from ._init_law import measure_init_laws, rescale_init
from ._lr_form import check_folds, fold_lrs, is_fold, lr_form_option
from ._lr_ratios import register_model
from ._rules import Parametrization, get_parametrization
from ._shapes import build, collect_usages, infer_params
from ._table import _TABLE_ATTR, ModuleScaling, ScalingTable, unwrap, warn_no_readout
from ._trace import scale_traced_attention
from ._usage import assign_raw_readouts, returned_readout

__all__ = ["parametrize", "attach_table", "attention_trace_pending"]

_HOOK_ATTR = "_hptransfer_hooks"


def parametrize(
    factory: Callable[..., nn.Module],
    *,
    width: float,
    base_width: float,
    parametrization: str | Parametrization = "mup",
    output_mult: float = 1.0,
    attn_mult: float = 1.0,
    base_std: float | None = None,
    zero_readout: bool = False,
    zero_query: bool | Sequence[str] = False,
    readout: str | Sequence[str] | None = None,
    roles: Mapping[str, str] | None = None,
    example_input: Any = None,
    attention: str = "auto",
    probe_width: float | None = None,
    depth: int | None = None,
    base_depth: int | None = None,
    branches: Sequence[str] | None = None,
    lr_form: str = "groups",
) -> nn.Module:
    """Build ``factory(width)`` (or ``factory(width, depth)``) and rewrite it into ``parametrization``.

    Args:
        factory: ``width -> nn.Module``, or ``(width, depth) -> nn.Module`` when ``depth`` is given;
            called once for real and on the meta device at ``base_width`` and ``probe_width`` (and,
            under a depth-scaled rule, at two depths) to find which axes grow.
        width: the width to build (the factory's own unit: d_model, channels, ...).
        base_width: the width of the base shapes; at ``width == base_width`` every
            parametrization equals SP exactly.
        parametrization: a registered name (``"sp"``, ``"mup"``) or a :class:`Parametrization`.
        output_mult: readout multiplier (a tunable HP); μP applies ``output_mult / m``. Default 1.
        attn_mult: attention-logit multiplier (a tunable HP). Default 1.
        base_std: if given, weights (tensors with 2+ dims) are re-drawn from N(0, std^2) with
            ``std = base_std`` at the base width, scaled per role (the factory's init is discarded);
            default ``None`` keeps the factory's draw, measures its init law at the base and probe
            widths (fan_in / constant / zero / structured, in the table) and rescales it to μP:
            exact at the base width, equal to ``mup`` on PyTorch-default inits.
        zero_readout: zero-init the readout weight and bias (TP5's recommendation).
        zero_query: zero-init the query projection: ``True`` finds it by name (``q_proj``,
            ``query``, ``wq``, ``to_q``, ``q``) or in ``nn.MultiheadAttention``; or give glob
            patterns of parameter names.
        readout: glob pattern(s) naming the readout parameter(s) or module(s); needed only when
            several weights map width to a fixed size.
        roles: ``{glob: role}`` overrides (``input``, ``hidden``, ``output``, ``scalar``).
        example_input: an input for the model (tensor, tuple of args or dict of kwargs) used to
            trace ``scaled_dot_product_attention`` head sizes on the meta device. Without it the
            trace runs on the first forward call.
        attention: ``"auto"`` scales attention logits per the parametrization; ``"off"`` leaves
            attention as the model computes it.
        probe_width: the third width used to find width axes; default ``2 * base_width``.
        depth, base_depth: number of blocks of this model and of the base (default ``depth``). Under
            ``depth-mup``/``completep`` residual branches are multiplied by (base_depth/depth)^alpha and
            block LRs corrected (see ``_depth`` for the assumptions); under ``sp``/``mup`` the model is
            only built at ``depth``.
        branches: glob patterns of the residual-branch modules (``["*.attn.c_proj", "*.mlp.c_proj"]``)
            instead of tracing them with ``example_input``.
        lr_form: ``"groups"`` (default: per-parameter LRs from :func:`hptransfer.param_groups`) or
            ``"multipliers"``: Adam LR multipliers moved into forward and init (the abc-symmetry), so
            one Adam LR for all tensors trains μP (docs/parametrization.md: refusals, differences).

    Returns the model at ``width`` with its scaling table attached (:func:`hptransfer.scaling_table`).

    Raises:
        FactoryError, ShapeInferenceError, ParametrizationError: with the parameter and the fix.
    """
    rule = get_parametrization(parametrization)
    width, base_width, probe_width = check_widths(width, base_width, probe_width, attention)
    depth, base_depth = check_depths(rule, depth, base_depth, branches)
    # Plain data (kept in the table, compared when a rewritten model comes back from the factory).
    options: dict[str, Any] = {
        "output_mult": float(output_mult), "attn_mult": float(attn_mult),
        "base_std": None if base_std is None else float(base_std), "zero_readout": bool(zero_readout),
        "zero_query": zero_query if isinstance(zero_query, bool) else list(zero_query),
        "readout": readout if readout is None or isinstance(readout, str) else list(readout),
        "roles": dict(roles or {}), "attention": attention, "probe_width": probe_width,
        **({} if depth is None else {"depth": depth, "base_depth": base_depth, "branches": list(branches or [])}),
        **lr_form_option(lr_form),
    }
    return _rewrite(factory, rule, (width, base_width, probe_width), options, example_input)


def _rewrite(factory: Callable[..., nn.Module], rule: Parametrization, widths: tuple[float, float, float],
             options: dict[str, Any], example_input: Any) -> nn.Module:
    """Build the model, infer roles, record depth, rescale init, set multipliers and attach the table."""
    width, base_width, probe_width = widths
    depth = options.get("depth")
    fac = factory if depth is None else AtDepth(factory, depth)
    model = build(fac, width, meta=False, what="target")
    if _already_rewritten(model, rule, width, base_width, options):
        return model
    base = build(fac, base_width, meta=True, what="base")
    probe = build(fac, probe_width, meta=True, what="probe")
    params, readout_modules = infer_params(
        model, base, probe, widths=widths, readout=options["readout"], roles=options["roles"],
        pick_readout=lambda modules: returned_readout(fac, model, width, modules, example_input))
    if not assign_raw_readouts(params, collect_usages(model), fac, model, width, options, example_input):
        warn_no_readout(params, options["readout"], readout_modules)
    for module, name in readout_modules.items():
        params[name] = replace(params[name], readout_module=params[name].readout_module or module)
    params = measure_init_laws(fac, model, params, base_width=base_width, probe_width=probe_width)
    table = ScalingTable(rule.name, width, base_width, params=params, options=options)
    inner = [n for n, i in params.items() if i.role == "output" and not i.readout_module]
    if inner and readout_modules:
        table.notes.append(
            f"{', '.join(inner)}: map the width to a fixed size inside the network (a router or a bottleneck; the "
            f"readout is {', '.join(sorted(readout_modules))}): output weights read out in place (TP5 Table 3: init "
            "x 1/sqrt(m), Adam LR x 1/m).")
    if depth is not None:
        setup_depth(table, rule, factory, base, depth=depth, base_depth=options["base_depth"],
                    branches=options["branches"], example_input=example_input)
    rescale_init(model, table, rule)
    _readout_multipliers(table, rule, readout_modules, options["output_mult"])
    if example_input is not None:
        scale_width_constants(model, table, rule, fac, example_input)
    if options["attention"] == "auto":
        _setup_attention(model, base, table, rule, fac, example_input)
    if options.get("lr_form") == "multipliers":  # last: the traces above measure the unfolded model
        fold_lrs(model, table, rule)
        if example_input is not None:
            check_folds(model, table, fac, example_input)
    if example_input is None and not any(isinstance(h, _LazyTrace) for h in model._forward_pre_hooks.values()) \
            and (width != base_width or any(i.lr_folded != 1.0 for i in table)):
        model.register_forward_pre_hook(_LazyTrace(fac, rule, attention=False), with_kwargs=True)
    return attach_table(model, table)


def _already_rewritten(model: nn.Module, rule: Parametrization, width: float, base_width: float,
                       options: dict[str, Any]) -> bool:
    """True when the factory returned a model rewritten with these very settings (returned as is);
    raises when it was rewritten with others, since rewriting again would rescale the init twice."""
    existing = getattr(model, _TABLE_ATTR, None)
    if existing is None:
        return False
    if (existing.parametrization, existing.width, existing.base_width, existing.options) == (
            rule.name, width, base_width, options):
        return True
    raise ParametrizationError(
        f"the factory returned a model already parametrized as {existing.parametrization!r} at width "
        f"{existing.width:g} (base {existing.base_width:g}) with other options; rewriting it again would "
        "rescale its init twice. Fix: return a fresh model from the factory."
    )


def _readout_multipliers(table: ScalingTable, rule: Parametrization, readout_modules: dict[str, str],
                         output_mult: float) -> None:
    """Record the forward multiplier of each readout module (applied by a hook in ``attach_table``)."""
    for module, name in readout_modules.items():
        mult = rule.readout_multiplier(table.params[name], output_mult)
        if mult != 1.0:
            reason = f"readout of {name}: output_mult / width_mult" if rule.name != "sp" else "output_mult"
            table.module_scalings.append(ModuleScaling(module, "input", mult, reason))


def attach_table(model: nn.Module, table: ScalingTable) -> nn.Module:
    """Attach ``table`` to ``model`` and install its forward hooks (no init change).

    Used by :func:`parametrize` and to restore a saved table onto a model rebuilt from a
    checkpoint (``ScalingTable.from_dict``). Calling it twice replaces the hooks, so it is
    idempotent.
    """
    model = unwrap(model)
    for h in model.__dict__.pop(_HOOK_ATTR, []):
        h.remove()
    model.__dict__[_HOOK_ATTR] = _install(model, table.module_scalings)
    by_module = _attention_by_module(table)
    _attention.attach_scaling_attributes(model, {
        name: f for name, factors in by_module.items() for f in factors.pop("scaling", {}).values()})
    active = {
        name: (factors.get("sdpa", {}), factors.get("mha", {}))
        for name, factors in by_module.items()
        if any(f != 1.0 for kind in factors.values() for f in kind.values())
    }
    enters = _attention.attach_attention(model, active) if active else {}
    if not active:
        _attention.detach_attention(model)
    setattr(model, _TABLE_ATTR, table)
    model.__dict__["_hptransfer_enters"] = enters
    register_model(model)  # so that an optimizer that ignores the table's LRs is stopped at its first step
    return model


def _install(model: nn.Module, scalings: list[ModuleScaling]) -> list[Any]:
    """Register the forward hooks of ``scalings`` on ``model``'s modules; returns their handles."""
    handles = []
    for ms in scalings:
        module = _submodule(model, ms.module)
        if ms.kind == "input":
            handles.append(module.register_forward_pre_hook(_ScaleInput(ms.multiplier)))
        else:  # "output", "constant"
            handles.append(module.register_forward_hook(_ScaleOutput(ms.multiplier)))
    return handles


class _ScaleInput:
    """Forward pre-hook multiplying the first positional input (a readout multiplier)."""

    def __init__(self, mult: float):
        self.mult = mult

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (args[0] * self.mult, *args[1:])


class _ScaleOutput:
    """Forward hook multiplying the output."""

    def __init__(self, mult: float):
        self.mult = mult

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):  # (hidden, extras...) as Hugging Face attention returns: scale hidden
            return (output[0] * self.mult, *output[1:])
        if isinstance(output, MutableMapping):  # a ModelOutput: its first field (last_hidden_state)
            key = next(iter(output))
            output[key] = output[key] * self.mult
            return output
        return output * self.mult


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name) if name else model
    except AttributeError:
        raise ParametrizationError(
            f"the scaling table names module {name!r}, which this model does not have. Fix: attach a table "
            "made for this model architecture."
        ) from None


def _attention_by_module(table: ScalingTable) -> dict[str, dict[str, dict[int, float]]]:
    out: dict[str, dict[str, dict[int, float]]] = {}
    for key, factors in table.attention.items():
        kind, _, module = key.partition(":")
        out.setdefault(module, {})[kind] = factors
    return out


def _setup_attention(
    model: nn.Module,
    base: nn.Module,
    table: ScalingTable,
    rule: Parametrization,
    factory: Callable[..., nn.Module],
    example_input: Any,
) -> None:
    attn_mult = table.options["attn_mult"]
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            d = module.embed_dim // module.num_heads
            b = cast(nn.MultiheadAttention, base.get_submodule(name))
            d0 = b.embed_dim // b.num_heads
            table.attention[f"mha:{name}"] = {d: rule.attention_factor(d, d0, attn_mult)}
    if example_input is not None:
        scale_traced_attention(model, table, rule, factory, example_input)
    elif not (table.width == table.base_width and attn_mult == 1.0):
        model.register_forward_pre_hook(_LazyTrace(factory, rule), with_kwargs=True)


def attention_trace_pending(model: nn.Module) -> bool:
    """True while ``model`` waits for its first forward call to trace attention (no ``example_input``)."""
    hooks = unwrap(model)._forward_pre_hooks.values()
    return any(isinstance(h, _LazyTrace) and not h.done for h in hooks)


class _LazyTrace:
    """Root pre-hook: on the first forward, trace SDPA head sizes (``attention``) and
    width-dependent constants (``_constants``) with the real input's shapes and install their
    scaling; afterwards it only checks a flag (traceable by ``torch.compile`` without a graph break)."""

    def __init__(self, factory: Callable[..., nn.Module], rule: Parametrization, attention: bool = True):
        self.factory = factory
        self.rule = rule
        self.attention = attention
        self.done = False

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not self.done:
            if torch.compiler.is_compiling():
                # Under torch.compile the trace (meta builds, Python-side bookkeeping) must run eagerly.
                # ``torch.compiler.disable`` imports torch._dynamo (1-2 s), so it is applied here, where
                # dynamo is already loaded, rather than as a decorator evaluated at import.
                torch.compiler.disable(self._trace)(module, args, kwargs)
            else:
                self._trace(module, args, kwargs)

    def _trace(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if args and kwargs:
            self.done = True
            raise ParametrizationError(
                "cannot trace attention for a first call with both positional and keyword inputs. Fix: pass "
                "example_input= to parametrize()."
            )
        table = getattr(module, _TABLE_ATTR)
        inputs = dict(kwargs) if kwargs else tuple(args)
        check_folds(module, table, self.factory, inputs)  # before anything changes: refused at every call
        self.done = True
        # Traced without hptransfer's own multipliers, which are constants that differ with width too; a
        # tensor folded by lr_form="multipliers" keeps its own, so that the trace sees the unfolded model.
        for h in module.__dict__.pop(_HOOK_ATTR, []):
            h.remove()
        folds = _install(module, [ms for ms in table.module_scalings if is_fold(ms)])
        try:
            scale_width_constants(module, table, self.rule, self.factory, inputs)
            if self.attention:
                scale_traced_attention(module, table, self.rule, self.factory, inputs)
        finally:
            for h in folds:
                h.remove()
            attach_table(module, table)
        root_enter = module.__dict__["_hptransfer_enters"].get("")
        if root_enter is not None:  # the root computes attention itself: activate for this call too
            root_enter(module, args)

