"""The one build path: a :class:`~hptransfer.recipe.RunSpec` -> model, optimizer, task, schedule.

Every stage builds its runs here: the tuner's objective, the check's runner, ``transfer``
(optimizer groups on the meta device), ``load``, the coordinate check and ``hptransfer run``,
whichever door (Python or recipe) they came in by. ``_run`` trains what is built here.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import (
    FactoryError,
    OptimizerConfigError,
    ParametrizationError,
    ShapeInferenceError,
    TrainingError,
)
from ..parametrization import get_parametrization, optimizer_family, param_groups, parametrize
from ..parametrization._groups import optimizer_class
from ..parametrization._shapes import current_role, width_role
from ..recipe import ModelSpec, OptimizerSpec, ParametrizationSpec, RunSpec, TaskSpec
from ..recipe._spec import import_object, is_object
from ._gains import apply_gains
from ._loop import Schedule

__all__ = ["Built", "build", "make_factory", "make_task", "parametrize_options", "optimizer_kwargs",
           "make_schedule", "model_cost", "untrained_loss", "torch_threads", "WidthFactory", "make_optimizer"]


class WidthFactory:
    """A picklable ``(width[, depth]) -> nn.Module`` calling ``fn(**kwargs, width_arg=width, depth_arg=depth)``."""

    def __init__(self, fn: Callable[..., nn.Module], kwargs: Mapping[str, Any], width_arg: str,
                 depth_arg: str = "depth"):
        self.fn, self.kwargs, self.width_arg, self.depth_arg = fn, dict(kwargs), width_arg, depth_arg
        self._check_signature()

    def _check_signature(self) -> None:
        """Refuse up front a factory that cannot take the width or the model.kwargs by name."""
        import inspect

        try:
            params = inspect.signature(self.fn).parameters
        except (TypeError, ValueError):  # a builtin or C callable: nothing to check
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        named = [n for n, p in params.items() if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                            inspect.Parameter.KEYWORD_ONLY)]
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        if self.width_arg not in named:
            guess = [n for n in named if n in ("width", "d_model", "hidden", "hidden_size", "dim", "n_embd",
                                               "channels", "d_hidden", "n_hidden", "embed_dim")]
            raise FactoryError(
                f"model factory {name}({', '.join(named)}) has no argument {self.width_arg!r} (model.width_arg) to "
                f"take the width. Fix: set model.width_arg to its width argument"
                + (f", e.g. `width_arg: {guess[0]}`." if guess else "."))
        unknown = [k for k in self.kwargs if k not in named]
        if unknown:
            raise FactoryError(f"model.kwargs {unknown} are not arguments of model factory {name}({', '.join(named)}). "
                               "Fix: remove or rename them in model.kwargs.")

    def __call__(self, width: int, depth: int | None = None) -> nn.Module:
        at_depth = {} if depth is None else {self.depth_arg: depth}
        return self.fn(**self.kwargs, **{self.width_arg: width}, **at_depth)

    def cache_key(self) -> Any:
        """What it builds, for parametrize's cache of init measurements (None: unhashable kwargs)."""
        try:
            return ("WidthFactory", self.fn, tuple(sorted(self.kwargs.items())), self.width_arg, self.depth_arg)
        except TypeError:
            return None


def make_task(task: TaskSpec) -> Any:
    """The task object: a built-in task by name, the object given from Python, or ``None`` (the user's
    own ``train_fn``, or no task)."""
    if task.name is None:
        return None
    if is_object(task.name):
        return task.name
    from ..zoo.tasks import get_task

    return get_task(task.name, **task.kwargs)


def make_factory(model: ModelSpec, task: Any = None) -> Callable[..., nn.Module] | None:
    """``width -> nn.Module`` for a model spec (``None`` if it names none). Built-in models get the
    task's sizes (vocabulary, classes) as defaults. A factory given from Python is called as it is
    (the width first, as :func:`hptransfer.parametrize` does), with ``model.kwargs`` bound."""
    if is_object(model.factory):
        return functools.partial(model.factory, **model.kwargs) if model.kwargs else model.factory
    if model.factory is not None:
        return WidthFactory(import_object(model.factory, "model.factory"), model.kwargs, model.width_arg,
                            model.depth_argument)
    if model.hf is not None:
        from ..hf import hf_factory  # local: only recipes naming a Hugging Face model need it

        return hf_factory(model.hf, model.config, model.width_field, model.hf_class)
    if model.name is None:
        return None
    from ..zoo.models import get_model

    defaults = task.model_kwargs() if task is not None else {}
    return WidthFactory(get_model(model.name), {**defaults, **model.kwargs}, model.width_arg, model.depth_argument)


#: :func:`hptransfer.parametrize` options that are fields of ``parametrization`` (not ``parametrization.options``).
_FIELD_OPTIONS = {"base_width", "parametrization", "output_mult", "attn_mult", "base_std", "init_std",
                  "zero_readout", "zero_query", "depth", "base_depth", "width"}


def parametrize_options(spec: RunSpec) -> dict[str, Any]:
    """Keyword arguments of :func:`hptransfer.parametrize` for the spec (the one HP -> option map).

    Raises:
        ParametrizationError: the spec has no parametrization (a ``train_fn`` recipe that leaves it to the
            user's code), or ``parametrization.options`` repeats a field of the section.
    """
    p = _parametrization(spec)
    clash = sorted(set(p.options) & _FIELD_OPTIONS)
    if clash:
        raise ParametrizationError(f"parametrization.options {clash} are fields of the `parametrization` section. "
                                   f"Fix: set parametrization.{clash[0]} instead (init_std for base_std).")
    return {"base_width": spec.base_width, "parametrization": p.name, "output_mult": float(p.output_mult),
            "attn_mult": float(p.attn_mult), "base_std": None if p.init_std is None else float(p.init_std),
            "zero_readout": p.zero_readout, "zero_query": p.zero_query, **p.options,
            **({} if spec.depth is None else {"depth": spec.depth, "base_depth": spec.base_depth})}


def _parametrization(spec: RunSpec) -> ParametrizationSpec:
    if spec.parametrization is None:
        raise ParametrizationError(
            "the run spec has no parametrization: its recipe leaves it to your own train_fn, so hptransfer does "
            "not know how your code rewrote the model. Fix: add a `parametrization:` section to the recipe (or "
            "pass parametrization= to hptransfer.transfer()).")
    return spec.parametrization


def optimizer_kwargs(spec: RunSpec) -> dict[str, Any]:
    """Keyword arguments of the torch optimizer besides the groups and ``lr``: ``optimizer.kwargs``, and
    the betas and eps (Adam family, Muon's AdamW part) or momentum (SGD) of a named optimizer."""
    o = _optimizer(spec)
    if is_object(o.name):  # a class given from Python: only what the user named
        return dict(o.kwargs)
    own = {"momentum": float(o.momentum)} if o.name == "sgd" else \
        {"betas": (float(o.beta1), float(o.beta2)), "eps": float(o.eps)}
    return {**own, **o.kwargs}


def _optimizer(spec: RunSpec) -> OptimizerSpec:
    if spec.optimizer is None:
        raise TrainingError("the run spec has no optimizer: its recipe leaves it to your own train_fn. Fix: build "
                            "the optimizer in your code (hptransfer.optimizer(model, ...)), or add an `optimizer:` "
                            "section to the recipe.")
    return spec.optimizer


def _scale_eps(spec: RunSpec) -> bool:
    """``optimizer.scale_eps``, defaulting to on for depth-scaled rules (CompleteP's eps x 1/(m_d m_L^alpha))."""
    o = _optimizer(spec)
    if optimizer_family(o.name if is_object(o.name) else str(o.name)) == "sgd":
        return False
    if o.scale_eps is not None:
        return bool(o.scale_eps)
    return get_parametrization(_parametrization(spec).name).depth_alpha is not None


def make_schedule(spec: RunSpec) -> Schedule | None:
    """The LR schedule of the spec (``None`` when the user's ``train_fn`` decides it)."""
    s = spec.schedule
    if s is None:
        return None
    return Schedule(warmup=float(s.warmup), decay=s.decay, min_lr_frac=float(s.min_lr_frac))


@dataclass
class Built:
    """Everything one training run needs, built from ``spec`` (``optimizer`` and ``schedule`` are ``None``
    when the spec leaves them to the user's own ``train_fn``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    task: Any
    schedule: Schedule | None
    spec: RunSpec

    @property
    def width(self) -> int:
        return self.spec.width


def build(
    spec: RunSpec,
    *,
    factory: Callable[..., nn.Module] | None = None,
    task: Any = None,
    device: str | torch.device | None = None,
    parametrize_extra: Mapping[str, Any] | None = None,
    role: str | None = None,
) -> Built:
    """Build model (init drawn after ``torch.manual_seed(spec.seed)``), optimizer, task and schedule.

    Args:
        spec: the run.
        factory: your ``width -> nn.Module`` (``(width, depth) -> nn.Module`` when ``spec.depth`` is set)
            when the spec names none (Python API); else the spec's.
        task: an already built task object (saves rebuilding its data); else from ``spec.task``.
        device: build the model there (``"meta"``: shapes and groups only, no memory, no init).
        parametrize_extra: further :func:`hptransfer.parametrize` options (``readout``, ``roles``...).
        role: what this width is for (``"proxy"``, ``"target"``, ``"check"``...), named in factory errors.

    Raises:
        FactoryError, ParametrizationError, OptimizerConfigError: from the factory and the rewrite,
            naming the width, module or parameter and the fix.
    """
    with width_role(role) if role else contextlib.nullcontext():
        return _build(spec, factory, task, device, parametrize_extra)


def _build(spec: RunSpec, factory: Callable[..., nn.Module] | None, task: Any, device: str | torch.device | None,
           parametrize_extra: Mapping[str, Any] | None) -> Built:
    task = task if task is not None else make_task(spec.task)
    fac = factory if factory is not None else make_factory(spec.model, task)
    if fac is None:
        raise FactoryError("the run spec names no model (model.name, model.factory or model.hf). Fix: name one, "
                           "or pass factory= (your width -> nn.Module).")
    opts = {**parametrize_options(spec), **dict(parametrize_extra or {})}
    meta = device is not None and torch.device(device).type == "meta"
    # A meta build (the transfer's, for target.yaml's groups) needs it too: roles that only the forward
    # shows (a router read out in place, a width-dependent constant held) must match the real run's.
    if task is not None and "example_input" not in opts:
        opts["example_input"] = task.example_input()
    torch.manual_seed(spec.seed)
    try:
        with torch.device("meta") if meta else contextlib.nullcontext():
            model = parametrize(fac, width=spec.width, **opts)
    except (ShapeInferenceError, ParametrizationError) as exc:  # name the model and the width's role
        name = spec.model.factory or spec.model.name or (f"hf: {spec.model.hf}" if spec.model.hf else None) \
            or getattr(fac, "__qualname__", None)
        what = f"model {name}" if name else "the model"
        raise type(exc)(f"{what} at width={spec.width} (the {current_role()} width): {exc}") from None
    if device is not None and not meta:
        model = model.to(device)
    opt = make_optimizer(model, spec) if spec.optimizer is not None else None
    return Built(model, opt, task, make_schedule(spec), spec)


def make_optimizer(model: nn.Module, spec: RunSpec) -> torch.optim.Optimizer:
    """The spec's optimizer over ``model``'s μP/SP parameter groups (per-group LR and weight decay).

    Also for a model whose parameters were replaced after the build (FSDP2's ``fully_shard``): the
    groups are found by parameter name in the model's scaling table."""
    o = _optimizer(spec)
    cls = o.name if is_object(o.name) else optimizer_class(o.name)
    groups = param_groups(model, lr=float(o.lr), weight_decay=float(o.weight_decay), optimizer=o.name,
                          weight_decay_mode=o.weight_decay_mode, decay=o.decay, eps=float(o.eps),
                          scale_eps=_scale_eps(spec), muon_lr=float(o.lr) * float(o.muon_lr_ratio))
    groups = apply_gains(model, groups, _parametrization(spec).gains, spec.width / spec.base_width)
    kwargs = optimizer_kwargs(spec)
    _check_kwargs(cls, o.kwargs)
    return cls(groups, lr=float(o.lr), **kwargs)


def _check_kwargs(cls: type, kwargs: Mapping[str, Any]) -> None:
    """Refuse an ``optimizer.kwargs`` entry the optimizer class does not take, naming what it takes."""
    import inspect

    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        takes = sorted(set(params) - {"self", "params", "lr"})
        raise OptimizerConfigError(f"optimizer.kwargs {unknown} are not options of {cls.__name__}. Fix: use some of "
                                   f"{takes} (betas as optimizer.beta1/beta2).")


def model_cost(spec: RunSpec) -> dict[str, float]:
    """Training cost of the run: parameters, tokens and FLOPs (6 x params x tokens).

    Tokens per example are the task's sequence length (1 for classification). Returns
    ``{"params", "tokens", "flops", "param_steps"}``; built on the meta device (no memory).
    A spec whose model or length is not known here (the user's own loop) costs ``nan``.
    """
    task = make_task(spec.task)
    factory = make_factory(spec.model, task)
    if factory is None or not spec.train.steps or not spec.train.batch_size:
        nan = math.nan
        return {"params": nan, "tokens": nan, "flops": nan, "param_steps": nan}
    with torch.device("meta"):
        model = factory(spec.width) if spec.depth is None else factory(spec.width, spec.depth)
    n = sum(p.numel() for p in model.parameters())
    per_example = int(getattr(task, "block_size", 1)) if task is not None else 1
    tokens = spec.train.steps * spec.train.batch_size * per_example
    return {"params": n, "tokens": tokens, "flops": 6.0 * n * tokens, "param_steps": n * spec.train.steps}


def untrained_loss(task: TaskSpec | Any) -> float:
    """The loss of an untrained (uniform) predictor of the task: the diverged-run penalty. ``inf`` if unknown."""
    obj = make_task(task) if isinstance(task, TaskSpec) else task
    return float(getattr(obj, "init_loss_bound", math.inf)) if obj is not None else math.inf


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: leave it), then restore.

    Why: on a shared 2-core machine, OpenMP threads spin-waiting against other processes made the
    quickstart take 8 min with 2 threads and 14 s with 1 (measured); the models here are too small
    to gain from more.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
