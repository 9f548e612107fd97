"""The coordinate check's result: per-step slopes and the JSON-safe dict (hptransfer.coord._result)."""

from __future__ import annotations

import json
import math

from _helpers import mlp_coord


def test_slopes_have_one_entry_per_step() -> None:
    res = mlp_coord("mup")
    assert res.steps == [0, 1, 2]
    assert all(len(v) == 3 for v in res.slopes.values())
    assert all(math.isnan(v[0]) for v in res.update_slopes.values())
    n = len(res.widths) * 2 * 3 * len(res.modules)  # widths x seeds x steps x modules
    assert len(res.stats) == n


def test_to_dict_is_json_serialisable() -> None:
    for res in (mlp_coord("mup"), mlp_coord("sp")):
        d = res.to_dict()
        text = json.dumps(d, allow_nan=False)
        back = json.loads(text)
        assert back["passed"] == res.passed
        assert back["update_slopes"]["readout"][0] is None  # no update at init
        assert len(back["failing"]) == len(res.failing)
        assert back["tolerances"] == res.tolerances
