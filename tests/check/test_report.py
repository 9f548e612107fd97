"""The check's result types: Tolerances and the TransferReport's JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers import LR_GRID, bowl_check

from hptransfer.check import Tolerances
from hptransfer.errors import CheckError


def test_tolerances_validate():
    with pytest.raises(CheckError, match="max_drift"):
        Tolerances(max_drift=0)


def test_json_report_is_strict_json_with_the_numbers(tmp_path):
    rep = bowl_check()
    text = rep.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    json.dumps(data, allow_nan=False)  # no NaN/Infinity tokens
    assert json.loads(text)["passed"] is True
    sp = next(r for r in data["results"] if r["parametrization"] == "sp")
    assert sp["verdict"] == "fail" and sp["drift"]["slope"] < 0 and len(sp["drift"]["ci95"]) == 2
    assert len(sp["optima"]) == 4 and sp["optima"][0]["width"] == 64
    assert np.asarray(sp["losses"], dtype=float).shape == (4, len(LR_GRID), 2)
