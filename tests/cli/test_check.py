"""``hptransfer check``: JSON, JUnit and the figure; exit codes 0, 1 and 2."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hptransfer.cli import main

_RECIPE = """
name: tiny
model: {name: mlp, kwargs: {depth: 3}}
task: {name: classification, kwargs: {n_train: 256, n_val: 128}}
parametrization: {name: mup, base_width: 8}
optimizer: {name: adam}
schedule: {decay: constant}
train: {batch_size: 8, steps: 3}
widths: {proxy: 8, target: 32}
search: {lr: {type: log_float, low: 0.001, high: 0.1}}
check:
  seeds: [0, 1]
  lr: {low: 0.001, high: 0.1, per_octave: 0.5}
  workers: 1  # in this process: spawning workers costs more than these 3-step runs
"""


def test_cli_writes_json_and_junit_and_exits_0_or_1(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(_RECIPE)
    code = main(["check", str(recipe), "--compare", "sp,mup", "--out", str(tmp_path / "run"), "-q", "--workers", "1",
                 "--json", str(tmp_path / "r.json"), "--junit-xml", str(tmp_path / "j.xml"),
                 "--plot", str(tmp_path / "f.png")])
    out = capsys.readouterr().out
    assert code in (0, 1) and "transfer check" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["config"]["widths"] == [8, 16, 32] and {r["parametrization"] for r in data["results"]} == {"sp", "mup"}
    assert code == (0 if data["passed"] else 1)
    assert ET.parse(tmp_path / "j.xml").getroot().tag == "testsuites"
    assert (tmp_path / "f.png").exists()
    assert (tmp_path / "run" / "study.journal").exists()  # the tuner's storage


@pytest.mark.parametrize("extra, match", [
    (["--set", "check.seeds=[0]"], "check.seeds"),
    (["--expect", "sp"], "PARAM=VERDICT"),
    (["--compare", "mup", "--expect", "sp=fail"], "--compare"),
    (["--expect", "sp=fail"], "--compare mup,sp"),  # without --compare the gate "SP must fail" checked nothing
    (["--compare", "foo"], "unknown parametrization"),
    (["--plot", "/nonexistent-hpt/deeper/f.png"], "nonexistent-hpt"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, extra, match):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(_RECIPE)
    code = main(["check", str(recipe), "--out", str(tmp_path / "run"), "-q", *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert not Path("/nonexistent-hpt").exists()
