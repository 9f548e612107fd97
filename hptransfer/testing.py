"""Assertions for users' own test suites: put μP checks in pytest next to the model code.

>>> from hptransfer.testing import assert_coord_check, assert_transfer   # doctest: +SKIP
>>> def test_my_model_transfers():                                      # doctest: +SKIP
...     assert_coord_check(my_factory, widths=[64, 128, 256, 512], task="classification")
...     assert_transfer(my_factory, "classification", widths=[64, 256, 1024],
...                     grid={"lr": [2.0 ** (k / 2) for k in range(-28, -11)]}, steps=150)

Both return the result on success and raise ``AssertionError`` on failure, with a message that
names the failing parametrization, HP, module and width, the numbers, and the path of the
figure written for the failure (``plot_dir``, default a fresh temporary folder).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._io import write_text_atomic
from .check import TransferReport, check_transfer
from .coord import CoordCheckResult, coord_check

__all__ = ["assert_transfer", "assert_coord_check"]


def _plot_dir(plot_dir: str | Path | None) -> Path:
    return Path(plot_dir) if plot_dir is not None else Path(tempfile.mkdtemp(prefix="hptransfer-"))


def assert_transfer(
    factory: Callable[..., Any] | str | TransferReport,
    task: Any = None,
    *,
    plot_dir: str | Path | None = None,
    **check_kwargs: Any,
) -> TransferReport:
    """Run :func:`hptransfer.check_transfer` (or take a finished report) and assert it passed.

    Args:
        factory: the model factory (or built-in name) -- or a :class:`TransferReport` to judge.
        task: the task (or built-in task name); unused when a report is given.
        plot_dir: where the failure figure goes (default: a new temporary folder).
        **check_kwargs: ``widths``, ``grid``, ``seeds``, ``parametrizations``, ``expect``,
            ``tolerances``, ``steps``... as for :func:`hptransfer.check_transfer`.

    Returns:
        The report (so a test can assert more, e.g. ``report.result("mup").drift.slope``).

    Raises:
        AssertionError: a parametrization missed its expectation; the message names the
            parametrization, HP and failing width, lists every reason and the figure paths.
    """
    report = factory if isinstance(factory, TransferReport) else check_transfer(factory, task, **check_kwargs)
    if report.passed:
        return report
    out = _plot_dir(plot_dir)
    hps = dict.fromkeys(r.hp for r in report.results)
    figures = [str(report.plot(out / f"transfer_{hp}.png", hp=hp)) for hp in hps]
    write_text_atomic(out / "transfer_report.json", report.to_json())
    heads = []
    for r in report.failing:
        first = r.reasons[0] if r.reasons else ""
        heads.append(f"{r.parametrization} {r.hp}: {r.verdict} (expected {r.expect}); {first}")
    raise AssertionError("transfer check failed:\n  " + "\n  ".join(heads) + "\n" + report.summary()
                         + "\nfigures: " + ", ".join(figures))


def _worst_width(result: CoordCheckResult, module: str, step: int, kind: str) -> tuple[float, float]:
    """The width at which ``module``'s statistic jumps most from the previous width, and the
    jump in log2 per doubling (the local slope)."""
    values = np.asarray(result.mean_stat(module, step, kind), dtype=float)
    lw = np.log2(np.asarray(result.widths, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        local = np.diff(np.log2(values)) / np.diff(lw)
    if local.size == 0 or not np.isfinite(local).any():
        return float(result.widths[-1]), math.nan
    k = int(np.nanargmax(np.where(np.isfinite(local), np.abs(local), -np.inf)))
    return float(result.widths[k + 1]), float(local[k])


def assert_coord_check(
    factory: Callable[..., Any] | CoordCheckResult,
    *,
    plot_dir: str | Path | None = None,
    max_modules: int = 5,
    **coord_kwargs: Any,
) -> CoordCheckResult:
    """Run :func:`hptransfer.coord_check` (or take its result) and assert it passed.

    Args:
        factory: the model factory -- or a :class:`~hptransfer.coord.CoordCheckResult` to judge.
        plot_dir: where the failure figure goes (default: a new temporary folder).
        max_modules: failing modules named in the message's first lines (all are in the summary).
        **coord_kwargs: ``widths``, ``task``, ``parametrization``, ``lr``, ``steps``... as for
            :func:`hptransfer.coord_check`.

    Raises:
        AssertionError: naming each failing module, the statistic, the step, its slope
            against width and the width where it jumps most, plus the summary and figure path.
    """
    result = factory if isinstance(factory, CoordCheckResult) else coord_check(factory, **coord_kwargs)
    if result.passed:
        return result
    out = _plot_dir(plot_dir)
    figure = result.plot(out / "coord_check.png")
    seen: dict[str, str] = {}
    for module, step, kind, slope in result.failing:
        if module in seen or len(seen) >= max_modules:
            continue
        width, local = _worst_width(result, module, step, kind)
        seen[module] = (f"module {module!r}: {kind} slope {slope:+.2f} per width doubling at step {step} "
                        f"(steepest at width {width:g}: {local:+.2f})")
    more = len({m for m, *_ in result.failing}) - len(seen)
    lines = list(seen.values()) + ([f"... and {more} more module(s)"] if more > 0 else [])
    raise AssertionError("coordinate check failed:\n  " + "\n  ".join(lines) + "\n" + result.summary()
                         + f"\nfigure: {figure}")
