"""Early stopping of hopeless runs in the adaptive check, and the checkpoint losses it compares.

Every check run records its training loss at a few **checkpoints** (25%, 50% and 75% of its
steps): the mean training loss over the tenth of the steps before each checkpoint (a window
average, so one noisy batch does not decide). An adaptive check may stop a run at a checkpoint
when its loss there is above the **best completed run at the same width and seed** (the
reference: the lowest final validation loss so far) at the same checkpoint by more than that
checkpoint's margin (relative, default :data:`DEFAULT_MARGINS`):

    stop if loss_run(c) > (1 + margin(c)) * loss_ref(c)

Why that is safe for the verdict: a run far above the best curve at 25-75% of training is far
from the valley of the loss-vs-HP curve, and the check's analysis reads only the valley (the
argmin, its neighbours, the anchors). The adaptive sweep enforces that: a run may be stopped
only where the sweep marks it *prunable* (survey and bracketing points, never the refinement
window around the current best point nor the anchors), and a stopped point that later falls
into that window is rerun to completion. A stopped point counts as worse than the best for
bracketing and as missing (NaN) for the parabola fit and the bootstrap. The margins were
calibrated on the full grids of both shipped recipes (docs/verification.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna

from ..recipe._stages import PRUNE_MARGINS

__all__ = ["CHECKPOINTS", "DEFAULT_MARGINS", "checkpoint_steps", "checkpoint_losses", "CheckpointPruner"]

#: Fractions of a run's steps where its training loss is recorded and it may be stopped.
CHECKPOINTS: tuple[float, ...] = (0.25, 0.5, 0.75)

#: Relative margin above the reference curve, per checkpoint: ``check.prune_margins``' default (its home,
#: with the measurements behind it, is :data:`hptransfer.recipe._stages.PRUNE_MARGINS`).
DEFAULT_MARGINS: tuple[float, ...] = PRUNE_MARGINS


def checkpoint_steps(steps: int) -> list[int]:
    """The step counts (1-based) at which the checkpoints of a ``steps``-step run fall."""
    return [max(1, round(f * steps)) for f in CHECKPOINTS]


def _window(steps: int) -> int:
    return max(1, steps // 10)


def checkpoint_losses(losses: Sequence[float], steps: int) -> list[float]:
    """Mean training loss over the window before each checkpoint reached by ``losses`` (one per step)."""
    out = []
    for c in checkpoint_steps(steps):
        if len(losses) < c:
            break
        win = losses[max(0, c - _window(steps)):c]
        out.append(float(sum(win) / len(win)))
    return out


class CheckpointPruner:
    """The per-step ``report(step, loss)`` hook of one check run.

    Records the checkpoint losses (``values``) and, when ``reference`` (the best run's checkpoint
    losses) is given, raises ``optuna.TrialPruned`` at the first checkpoint ``k`` where the run is
    above ``(1 + margins[k]) x`` the reference. ``steps`` is the run's full length.
    """

    def __init__(self, steps: int, reference: Sequence[float] | None = None,
                 margins: Sequence[float] = DEFAULT_MARGINS):
        self.steps, self.margins = int(steps), [float(m) for m in margins]
        self.reference = list(reference or [])
        self.marks = checkpoint_steps(self.steps)
        self.losses: list[float] = []
        self.values: list[float] = []
        self.stopped_at: int | None = None

    def __call__(self, step: int, loss: float) -> None:
        self.losses.append(float(loss))
        k = len(self.values)
        if k >= len(self.marks) or step + 1 != self.marks[k]:
            return
        win = self.losses[-_window(self.steps):]
        value = float(sum(win) / len(win))
        self.values.append(value)
        margin = self.margins[min(k, len(self.margins) - 1)]
        if k < len(self.reference) and math.isfinite(value) and value > (1 + margin) * self.reference[k]:
            self.stopped_at = step + 1
            raise optuna.TrialPruned(f"stopped at step {step + 1}: training loss {value:.4g} above "
                                     f"{1 + margin:g} x the best run's {self.reference[k]:.4g}")
