"""Text renderings of a :class:`~hptransfer.check.TransferReport`: the terminal summary and
the Markdown table the README and ``docs/verification_results.md`` embed."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import TransferReport
    from ._verdict import ParamResult

__all__ = ["summary_text", "markdown_table"]


def _f(v: float, fmt: str = "+.2f") -> str:
    return format(v, fmt) if math.isfinite(v) else ("inf" if v == math.inf else "n/a")


def _row(r: ParamResult) -> list[str]:
    d = r.drift
    opt = " ".join(f"{o.x:.2f}" if o.edge is None else f"{o.x:.2f}({o.edge})" for o in r.optima)
    return [r.parametrization, r.hp, f"{_f(d.slope)} [{_f(d.lo)}, {_f(d.hi)}]",
            f"{_f(d.shift)} [{_f(d.shift_lo)}, {_f(d.shift_hi)}]",
            f"{_f(r.regret, '.4f')} ({_f(100 * r.regret_rel, '.2f')}%)", opt, str(r.n_diverged),
            r.verdict.upper() + ("" if r.met else f" (expected {r.expect})") if r.expect != "any"
            else r.verdict.upper() + " (reported)"]


_HEAD = ["param.", "HP", "drift oct/doubling [95% CI]", "shift oct [95% CI]", "regret nats (%)",
         "optimum log2 per width", "diverged", "verdict"]


def summary_text(report: TransferReport) -> str:
    """Verdict line, a table (one row per parametrization and HP) and every reason."""
    cfg = report.config
    head = (f"transfer check: {'PASSED' if report.passed else 'FAILED'} -- {cfg.get('axis', 'width')}s "
            f"{', '.join(str(w) for w in cfg.get('widths', []))}, seeds {cfg.get('seeds')}, "
            f"{report.seconds:.0f}s")
    t = report.tolerances
    lines = [head, f"tolerances: |drift| <= {t.max_drift:g} oct/doubling, regret <= {100 * t.max_regret:g}%, "
                   f"wider-is-worse <= {100 * t.max_wider_worse:g}%"]
    if "runs_trained" in cfg:
        lines.append(f"cost: {cfg.get('strategy', 'grid')} strategy, {cfg['runs_trained']} "
                     f"run(s) finished of a {cfg.get('grid_runs', '?')}-run grid, {cfg.get('runs_pruned', 0)} "
                     f"stopped early; {cfg.get('steps_trained', '?')} training steps")
    rows = [_HEAD] + [_row(r) for r in report.results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEAD))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for c in report.comparison():
        if c["interval_of"] == "mup":
            lines.append(f"{c['hp']}: mup's drift interval {'excludes' if c['excludes'] else 'INCLUDES'} "
                         f"{c['drift_of']}'s drift")
    for r in report.results:
        for reason in r.reasons:
            lines.append(("  - " if r.met else "  ! ") + reason)
    return "\n".join(lines)


def markdown_table(report: TransferReport) -> str:
    """The summary table as Markdown."""
    rows = [_HEAD, ["---"] * len(_HEAD)] + [_row(r) for r in report.results]
    return "\n".join("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows)
