"""The check's text summary (hptransfer.check._text)."""

from __future__ import annotations

from _helpers import bowl_check


def test_summary():
    text = bowl_check().summary()
    assert "PASSED" in text and "sp" in text and "mup" in text
