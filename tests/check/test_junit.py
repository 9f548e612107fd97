"""The check's JUnit XML: one test case per parametrization and HP."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from _helpers import bowl_check


def test_junit_xml_has_a_failure_naming_width_and_hp(tmp_path):
    rep = bowl_check(expect=None)
    rep.junit_xml(tmp_path / "j.xml")
    root = ET.parse(tmp_path / "j.xml").getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"transfer[sp:lr]", "transfer[mup:lr]"}
    fail = cases["transfer[sp:lr]"].find("failure")
    assert fail is not None and "width 512" in fail.get("message") and "lr" in fail.get("message")
    assert cases["transfer[mup:lr]"].find("failure") is None
