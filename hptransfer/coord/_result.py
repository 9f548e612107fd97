"""The coordinate check's result: slopes per module and step, the verdict, text, JSON and a plot."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CoordCheckResult", "ACT", "UPD", "READOUT_DECAY", "fmt", "json_num"]

ACT, UPD = "activation", "update"

#: Slope of the init-weight term of a fixed-size output under μP (width^-1/2): the extra
#: shrinkage allowed for the update of readout-like modules (see ``hptransfer.coord._coord``).
READOUT_DECAY = 0.5


@dataclass
class CoordCheckResult:
    """The outcome of :func:`coord_check`.

    Attributes:
        passed: True iff nothing is in :attr:`failing` and building the models raised no warning that
            transfer will not hold (those are in ``extra["warnings"]``).
        widths: the widths checked, ascending.
        steps: recorded step indices ``[0, 1, ..., n_steps]``; step ``t`` is measured after
            ``t`` optimizer steps (0 = at init).
        modules: module names in the order they first ran (``"(model)"`` is the root; a module
            called several times per forward gets ``name#2``, ``name#3``, ... for later calls).
        slopes: module -> per-step slope of log2(mean |h|) vs log2(width) (NaN when the
            statistic is exactly 0 at every width, +inf when it is non-finite somewhere; ±inf entries
            that a mask holds by design, the same ones at every step and share at every width, are
            left out of the statistic instead).
        update_slopes: module -> per-step slope of log2(mean |h_t - h_0|); index 0 is NaN.
        stats: raw records, one dict per (width, seed, step, module) with keys ``width``,
            ``seed``, ``step``, ``module``, ``numel`` (entries in the output), ``act`` and
            ``update`` (0.0 at step 0).
        failing: ``(module, step, kind, slope)``, worst first (largest excess over the
            tolerance); ``kind`` is ``"activation"`` or ``"update"``.
        tolerances: ``{"grow": ..., "vanish": ...}`` used for the verdict.
        fixed_size: modules whose output has the same size at every width (readout logits,
            the model output); their update may shrink by up to ``0.5 + tolerances["vanish"]``.
        parametrization, optimizer, lr: what was checked, for reports.
    """

    passed: bool
    widths: list[float]
    steps: list[int]
    modules: list[str]
    slopes: dict[str, list[float]]
    update_slopes: dict[str, list[float]]
    stats: list[dict[str, Any]]
    failing: list[tuple[str, int, str, float]]
    tolerances: dict[str, float]
    fixed_size: list[str] = field(default_factory=list)
    parametrization: str = "mup"
    optimizer: str = "adam"
    lr: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- reporting ------------------------------------------------------------------

    def mean_stat(self, module: str, step: int, kind: str = ACT) -> list[float]:
        """Mean over seeds of ``kind`` (``"activation"`` or ``"update"``) per width."""
        key = "act" if kind == ACT else "update"
        out = []
        for w in self.widths:
            vals = [r[key] for r in self.stats if r["module"] == module and r["step"] == step and r["width"] == w]
            out.append(float(np.mean(vals)) if vals else float("nan"))
        return out

    def summary(self, max_rows: int = 40) -> str:
        """A text table: verdict, tolerances, then the slopes of the last step per module
        (failing modules first, marked ``FAIL``), at most ``max_rows`` module rows."""
        warned = self.extra.get("warnings") or []
        verdict = "PASSED" if self.passed else "FAILED (" + ", ".join(
            ([f"{len(self.failing)} module/step/kind combination(s)"] if self.failing else [])
            + ([f"{len(warned)} warning(s) that transfer will not hold"] if warned else [])) + ")"
        widths = ", ".join(f"{w:g}" for w in self.widths)
        lines = [
            f"coordinate check ({self.parametrization}, {self.optimizer} lr={self.lr:g}, widths {widths}, "
            f"steps {self.steps[-1]}): {verdict}",
            f"tolerances: activation and update slopes <= {self.tolerances['grow']:g}; update slope >= "
            f"-{self.tolerances['vanish']:g} (fixed-size outputs: >= -{self.tolerances['vanish'] + READOUT_DECAY:g})",
        ]
        lines += [f"FAIL (parametrize warned): {w}" for w in warned]
        worst: dict[str, tuple[int, str, float]] = {}
        for module, step, kind, slope in self.failing:
            worst.setdefault(module, (step, kind, slope))
        if self.failing:
            named = [f"{m} ({k} slope {fmt(s)} at step {t})" for m, (t, k, s) in worst.items()]
            more = f", ... and {len(named) - 8} more" if len(named) > 8 else ""
            lines.append("failing modules (worst first): " + ", ".join(named[:8]) + more)
        last = self.steps[-1]
        lines.append(f"{'module':40s} {'act@0':>7s} {f'act@{last}':>7s} {f'upd@{last}':>7s} {'worst upd':>9s}  verdict")
        order = list(worst) + [m for m in self.modules if m not in worst]
        for module in order[:max_rows]:
            acts, upds = self.slopes[module], self.update_slopes[module]
            finite = [u for u in upds[1:] if not math.isnan(u)]
            extreme = max(finite, key=abs) if finite else float("nan")
            lines.append(
                f"{module[:40]:40s} {fmt(acts[0]):>7s} {fmt(acts[-1]):>7s} {fmt(upds[-1]):>7s} "
                f"{fmt(extreme):>9s}  {'FAIL' if module in worst else 'ok'}"
            )
        if len(order) > max_rows:
            lines.append(f"... {len(order) - max_rows} more module(s) (see to_dict())")
        unmeasured = self.extra.get("unmeasured") or {}
        if unmeasured:
            missed = ", ".join(f"{m} ({k})" for m, k in list(unmeasured.items())[:6])
            lines.append(
                f"not measured at some step, so not judged there: {missed}{' ...' if len(unmeasured) > 6 else ''}: "
                "the output was empty, or its rows differed from step 0's (routed tokens, as in MoE experts; "
                "'routed calls': one module applied to each expert in turn, whose k-th call is another expert at "
                "each width, judged through their sum in the parent module); a statistic is judged wherever it "
                "was measured at every width.")
        capped = self.extra.get("eps_capped") or {}
        if capped:
            eps = max(v["eps"] for v in capped.values())
            capped_names = ", ".join(f"{n} ({v['median_grad']:.2g})" for n, v in list(capped.items())[:4])
            lines.append(
                f"hint: Adam's eps={eps:g} is above a tenth of the median gradient entry of failing parameter(s) "
                f"{capped_names}{' ...' if len(capped) > 4 else ''} at width {self.widths[-1]:g}: eps, not the "
                "gradient, sets their update, and μP's gradients shrink with width, so those updates vanish. Fix: a "
                "smaller eps (recipe: optimizer.eps), or param_groups(..., scale_eps=True) (Everett et al. 2024, "
                "arXiv:2407.05872).")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite slopes and statistics become ``None``)."""
        return {
            "passed": self.passed,
            "parametrization": self.parametrization,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "widths": [float(w) for w in self.widths],
            "steps": list(self.steps),
            "modules": list(self.modules),
            "tolerances": dict(self.tolerances),
            "fixed_size": list(self.fixed_size),
            "slopes": {m: [json_num(s) for s in v] for m, v in self.slopes.items()},
            "update_slopes": {m: [json_num(s) for s in v] for m, v in self.update_slopes.items()},
            "failing": [
                {"module": m, "step": t, "kind": k, "slope": json_num(s)} for m, t, k, s in self.failing
            ],
            "stats": [
                {**r, "act": json_num(r["act"]), "update": json_num(r["update"])} for r in self.stats
            ],
            "extra": dict(self.extra),
        }

    def plot(self, path: str | Path, *, max_labels: int = 8) -> Path:
        """Write a PNG: top row mean |h| per step, bottom row mean |h_t - h_0| (steps >= 1).

        x: log2(width); y: the statistic on a log scale; one line per module. Modules that fail
        at that step (for that statistic) are drawn thick in colour and labelled with their
        slope (at most ``max_labels`` per panel); the rest are thin grey.

        Raises:
            CoordCheckError: matplotlib is not installed (``pip install hptransfer[plot]``).
        """
        from ._plot import plot_result

        return plot_result(self, Path(path), max_labels=max_labels)


def fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:+.2f}")


def json_num(x: float) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None

