"""``transformers.Trainer`` with μP's per-parameter learning rates and checkpoints that keep the table.

A plain ``Trainer`` builds one AdamW with one LR for every parameter, so a parametrized model
would train as SP (hptransfer's optimizer hook stops it at the first step; see
``parametrization/_lr_ratios``). :class:`Trainer` builds the groups from the model's scaling
table instead, from the ``TrainingArguments`` as given (``learning_rate`` is the base-width LR,
``weight_decay``, ``adam_beta1/2``, ``adam_epsilon``, ``optim`` for the class and its
keyword arguments, and the Trainer's own decay rule: no decay for biases and norm weights). The
Trainer's schedulers are multipliers on every group (``LambdaLR``), so the ratios hold.

Every save (``save_model`` and the checkpoints written during training) also writes
``hptransfer_table.json``, so :func:`hptransfer.hf.from_pretrained` and
``trainer.train(resume_from_checkpoint=...)`` work on what it saves. :class:`ScalingTableCallback`
does the checkpoint part for a plain ``Trainer`` given ``optimizers=(hptransfer.optimizer(...), None)``.

Importing this module imports transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import transformers
from torch import nn

from ..errors import OptimizerConfigError
from ..parametrization import param_groups, scaling_table
from ..parametrization._table import unwrap
from ._pretrained import TABLE_FILE

__all__ = ["Trainer", "ScalingTableCallback"]

#: keyword arguments through which an ``optim`` choice builds its own parameter groups
_OWN_GROUPS = ("params", "model", "optimizer_dict")


def _write_table(model: nn.Module, folder: str | Path) -> None:
    folder = Path(folder)
    if folder.is_dir():
        (folder / TABLE_FILE).write_text(scaling_table(unwrap(model)).to_json())


class ScalingTableCallback(transformers.TrainerCallback):
    """Writes the model's scaling table into each checkpoint folder the Trainer saves
    (``<output_dir>/checkpoint-<step>/hptransfer_table.json``), on the main process only."""

    def on_save(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                **kwargs: Any) -> None:
        if model is not None and state.is_world_process_zero:
            _write_table(model, Path(args.output_dir) / f"checkpoint-{state.global_step}")


class Trainer(transformers.Trainer):
    """``transformers.Trainer`` whose optimizer carries μP's per-parameter LRs.

    Use it as the Trainer; the model must come from :func:`hptransfer.hf.parametrize_config`
    or :func:`hptransfer.parametrize`. Two keyword arguments beyond the Trainer's:

    Args:
        weight_decay_mode: ``"coupled"`` (default; ``lr * wd`` as at the base width) or
            ``"independent"`` (see :func:`hptransfer.param_groups`).
        scale_eps: shrink Adam's epsilon per group as the parametrization says. Default off.

    ``optimizers=(opt, sched)`` still wins, as in the Trainer (build ``opt`` with
    :func:`hptransfer.optimizer`). ``optim`` choices that build their own parameter groups
    (GaLore, LOMO, layer-wise, Muon/Dion factories) are refused with the fix.
    """

    def __init__(self, *args: Any, weight_decay_mode: str = "coupled", scale_eps: bool = False,
                 **kwargs: Any) -> None:
        self.hpt_weight_decay_mode = weight_decay_mode
        self.hpt_scale_eps = scale_eps
        super().__init__(*args, **kwargs)
        scaling_table(unwrap(cast(nn.Module, self.model)))  # no table: fails here, not at the first save

    def create_optimizer(self, model: nn.Module | None = None) -> Any:
        opt_model: Any = self.model if model is None else model
        if self.optimizer is not None:
            return self.optimizer
        if self.optimizer_cls_and_kwargs is not None:
            cls, kwargs = self.optimizer_cls_and_kwargs
        else:
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        is_factory = getattr(transformers.trainer, "is_optimizer_factory", lambda c: False)
        own = [k for k in _OWN_GROUPS if k in kwargs]
        if is_factory(cls) or own or not isinstance(cls, type):
            raise OptimizerConfigError(
                f"TrainingArguments.optim={self.args.optim!r} builds its own parameter groups, which would drop "
                "μP's per-parameter LRs. Fix: use an Adam- or SGD-family optim (e.g. 'adamw_torch'), or pass "
                "optimizers=(hptransfer.optimizer(model, cls, lr=...), None).")
        kwargs = dict(kwargs)
        lr = float(kwargs.pop("lr", self.args.learning_rate))
        groups = param_groups(
            opt_model, lr=lr, weight_decay=float(self.args.weight_decay), optimizer=cls,
            weight_decay_mode=self.hpt_weight_decay_mode, decay=self.get_decay_parameter_names(opt_model),
            eps=kwargs.get("eps"), scale_eps=self.hpt_scale_eps,
        )
        make: Any = cls  # a torch optimizer class: its own keywords, not Optimizer's
        self.optimizer = make(groups, lr=lr, **kwargs)
        return self.optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call=_internal_call)
        if self.args.should_save:  # checkpoints come through here too (Trainer._save_checkpoint)
            _write_table(cast(nn.Module, self.model), output_dir or str(self.args.output_dir))
