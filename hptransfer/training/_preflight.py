"""Try a recipe's model before any trial runs, so that bad input fails at once and cleanly.

A tuning study can run for hours before its target width is first built, and a failure inside a
trial reaches the user through Optuna's log (a traceback per trial) before hptransfer's own error.
:func:`preflight` builds what the job will build, cheaply, in the order the job needs it:

* the proxy at each proxy width, for real, and one forward and loss on the task's first batch
  (a vocabulary or input size that does not fit the task);
* that the model returns logits, not probabilities (a final softmax), which the tasks' cross-entropy
  would take as logits;
* on a next-token task (``task.causal``), that the model does not see later positions: a
  bidirectional encoder (BERT, RoBERTa) copies the next token from its input, its loss falls
  towards 0 and the tuned values mean nothing;
* every target width on the meta device (shapes, rewrite and optimizer groups; no memory, no
  init), so that a width the factory refuses (a head count that does not divide it, a config
  field that is not an integer there) fails before tuning, not after it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import TrainingError
from ..recipe import Recipe
from ..zoo._task_base import as_logits
from ._build import build, make_task
from ._loop import task_loss

__all__ = ["preflight"]


def preflight(rec: Recipe) -> None:
    """Build ``rec``'s model at its proxy widths (one forward on the task's first batch) and at its
    target widths on the meta device.

    Nothing is trained and no RNG state of the caller changes. A recipe whose task trains through
    the user's own ``train_fn`` (no model named) is left to that function.

    Raises:
        FactoryError, ParametrizationError, OptimizerConfigError: from the build, naming the width and
            the recipe field that sets it.
        TrainingError: the model fails on the task's batch (names the batch, the task's sizes and the fix).
    """
    if not rec.model.names_model or rec.task.train_fn is not None:
        return
    task = make_task(rec.task)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for width in rec.widths.proxy:
            spec = rec.at(width)
            built = build(spec, task=task, role="proxy")
            if task is not None:
                x, y = task.batch(0, int(spec.train.batch_size or 1), seed=spec.seed)
                try:
                    task_loss(built.model, task, x, y)
                except TrainingError as exc:
                    raise TrainingError(f"at width={width} (the proxy width): {exc}") from None
                if width == rec.widths.proxy[0]:
                    _check_logits(built.model, task, x)
                    if getattr(task, "causal", False):
                        _check_causal(built.model, task, x, rec)
    for width in rec.widths.target or ():
        spec = rec.at(width, steps=rec.transfer.steps, batch_size=rec.transfer.batch_size, depth=rec.depths.target)
        build(spec, task=task, device="meta", role="target")


def _check_logits(model: torch.nn.Module, task: Any, x: Any) -> None:
    """The built-in tasks' loss is cross-entropy on logits: a model that ends in a softmax returns
    probabilities, and training on them would optimise another objective (a common slip)."""
    was_training = model.training
    model.eval()
    try:
        out = as_logits(model(x)).float()
    finally:
        model.train(was_training)
    if out.numel() and out.shape[-1] > 1 and float(out.min()) >= 0 and \
            float((out.sum(-1) - 1).abs().max()) < 1e-3:
        raise TrainingError(
            f"the model returns probabilities (its outputs are >= 0 and sum to 1 over the last dimension), but "
            f"task {task.name!r} trains with cross-entropy on logits: it would optimise another objective. Fix: "
            "return the logits (drop the final softmax; apply it only when you need probabilities).")


def _check_causal(model: torch.nn.Module, task: Any, x: torch.Tensor, rec: Recipe) -> None:
    """Change the last token of each sequence: in a causal model no module's output at the earlier
    positions changes; in a model that attends both ways they do (it reads its targets from its input).
    Every module's output is compared, not only the logits, which a zero-initialised readout makes 0."""
    if not (isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[1] > 1 and not x.is_floating_point()):
        return
    changed = x.clone()
    changed[:, -1] = (changed[:, -1] + 1) % int(getattr(task, "vocab_size", int(x.max()) + 2))
    # A third forward one token shorter tells positional outputs (dim 1 shrinks with the input) from a
    # channels-first output whose channel count happens to equal the length (a causal conv's).
    runs = [_sequence_outputs(model, t) for t in (x, changed, x[:, :-1])]
    for name, before in runs[0].items():
        after, short = runs[1].get(name), runs[2].get(name)
        if after is None or after.shape != before.shape or short is None or short.shape[1] != before.shape[1] - 1:
            continue
        moved = float((before[:, :-1] - after[:, :-1]).abs().max())
        if moved > 1e-4 * max(1e-6, float(before[:, :-1].abs().max())):
            fix = _causal_fix(rec.model.hf)
            raise TrainingError(
                f"the model sees later positions: changing each sequence's last token changed the output of "
                f"{name or 'the model'!r} at earlier positions (by up to {moved:.3g}). Task {task.name!r} predicts "
                "the next token, which such a model reads from its input: its loss falls towards 0 and the tuned "
                f"values would mean nothing. Fix: {fix}; or train it on a task of your own (task.train_fn).")


def _causal_fix(arch: str | None) -> str:
    if not arch:
        return "mask attention to earlier positions"
    from ..hf._config import has_causal_lm  # local: only recipes naming a Hugging Face model need it

    if has_causal_lm(arch):  # BERT, RoBERTa, ELECTRA...: a decoder form with a causal mask
        return f"set model.config.is_decoder: true with model.hf_class: AutoModelForCausalLM (model.hf={arch!r})"
    return (f"use a decoder (model.hf={arch!r} has no causal-LM class in transformers, so it cannot be made to attend "
            "only to earlier positions)")


def _sequence_outputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each module's (first) float output shaped ``(batch, length, ...)`` like ``x``, in eval mode."""
    outs: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def record(module: torch.nn.Module, args: Any, output: Any) -> None:
            t = output if isinstance(output, torch.Tensor) else as_logits(output) if hasattr(output, "logits") \
                else next((o for o in output if isinstance(o, torch.Tensor)), None) \
                if isinstance(output, (tuple, list)) else None
            if t is not None and t.is_floating_point() and t.dim() >= 2 and t.shape[:2] == x.shape[:2]:
                outs.setdefault(name, t.detach().float())
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()]
    was_training = model.training
    model.eval()  # dropout off: the two forwards differ only in the token changed
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return outs

