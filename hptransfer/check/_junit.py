"""JUnit XML for CI systems: one ``<testcase>`` per checked (parametrization, HP).

A result that met its expectation is a passing test case (its numbers in ``<system-out>``);
one that did not carries a ``<failure>`` whose message names the verdict and the first reason
(failing width and HP) and whose body lists every reason. Parsed by GitHub Actions
test-report actions, GitLab (``artifacts:reports:junit``), Jenkins and Azure Pipelines.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import write_text_atomic

if TYPE_CHECKING:
    from ._report import TransferReport

__all__ = ["junit_xml"]


def junit_xml(report: TransferReport, path: str | Path | None = None, *, suite: str = "hptransfer.check") -> str:
    """The report as a JUnit XML string; also written to ``path`` when given."""
    failures = len(report.failing)
    root = ET.Element("testsuites", name=suite, tests=str(len(report.results)), failures=str(failures),
                      errors="0", time=f"{report.seconds:.1f}")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(report.results)), failures=str(failures),
                       errors="0", skipped="0", time=f"{report.seconds:.1f}")
    for r in report.results:
        case = ET.SubElement(ts, "testcase", classname=f"{suite}.{r.parametrization}",
                             name=f"transfer[{r.parametrization}:{r.hp}]", time="0")
        d = r.drift
        numbers = (f"verdict={r.verdict} expect={r.expect} drift={_f(d.slope)} oct/doubling "
                   f"ci95=[{_f(d.lo)}, {_f(d.hi)}] shift={_f(d.shift)} regret={_f(r.regret)} nats "
                   f"({_f(100 * r.regret_rel)}%) optima_log2=[{', '.join(_f(o.x) for o in r.optima)}] "
                   f"widths={r.widths}")
        if not r.met:
            first = r.reasons[0] if r.reasons else f"verdict {r.verdict}, expected {r.expect}"
            fail = ET.SubElement(case, "failure", type=r.verdict.replace(" ", "_"),
                                 message=f"{r.parametrization} {r.hp}: {r.verdict} (expected {r.expect}): {first}")
            fail.text = "\n".join([numbers, *r.reasons])
        out = ET.SubElement(case, "system-out")
        out.text = numbers
    ET.indent(root)
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
    if path is not None:
        write_text_atomic(path, text)
    return text


def _f(v: float) -> str:
    return f"{v:+.3f}" if math.isfinite(v) else ("inf" if v == math.inf else "nan")
