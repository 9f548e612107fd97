"""The check's result types: :class:`Tolerances` (pass/fail limits) and :class:`TransferReport`.

They sit below the check's orchestration (``_check``) and its outputs (``_text``, ``_junit``,
``_plot``), so that every module of the check imports them from here and none imports back up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..errors import CheckError
from ..recipe import TolerancesSpec
from ._verdict import ParamResult

__all__ = ["Tolerances", "TransferReport"]


#: The check's pass/fail limits: the recipe section ``check.tolerances`` itself (one type, one set of defaults).
Tolerances = TolerancesSpec


@dataclass
class TransferReport:
    """Everything :func:`check_transfer` found. ``passed``: every result met its expectation."""

    results: list[ParamResult]
    tolerances: Tolerances
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    studies: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.met for r in self.results)

    @property
    def failing(self) -> list[ParamResult]:
        """Results that did not meet their expectation."""
        return [r for r in self.results if not r.met]

    def result(self, parametrization: str, hp: str = "lr") -> ParamResult:
        """The result for one parametrization and HP (KeyError-free: raises CheckError naming both)."""
        for r in self.results:
            if r.parametrization == parametrization and r.hp == hp:
                return r
        raise CheckError(f"no result for parametrization {parametrization!r} and HP {hp!r} in this report.")

    def summary(self) -> str:
        """A text table: one row per (parametrization, HP), then the reasons of each non-pass."""
        from ._text import summary_text

        return summary_text(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (non-finite numbers become ``None``)."""
        return {"passed": self.passed, "tolerances": asdict(self.tolerances), "config": self.config,
                "seconds": round(self.seconds, 1), "studies": list(self.studies),
                "results": [r.to_dict() for r in self.results], "comparison": self.comparison()}

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    def junit_xml(self, path: str | Path | None = None) -> str:
        """JUnit XML (one test case per parametrization and HP); also written to ``path``."""
        from ._junit import junit_xml

        return junit_xml(self, path)

    def plot(self, path: str | Path, hp: str = "lr") -> Path:
        """The TP5-style PNG for ``hp``: loss vs log2 HP per width, one column per parametrization,
        and the optimum against width with the fitted line underneath."""
        from ._plot import plot_report

        return plot_report(self, path, hp=hp)

    def comparison(self) -> list[dict[str, Any]]:
        """For every HP checked under several parametrizations: does each μP-like drift interval
        exclude the others' drift (e.g. ``mup`` vs ``sp``)?"""
        out = []
        for hp in dict.fromkeys(r.hp for r in self.results):
            rs = [r for r in self.results if r.hp == hp]
            for a in rs:
                for b in rs:
                    if a is not b:
                        out.append({"hp": hp, "interval_of": a.parametrization, "drift_of": b.parametrization,
                                    "excludes": bool(not (a.drift.lo <= b.drift.slope <= a.drift.hi))})
        return out
