"""The README's Python examples run as written (blocks fenced as ```python) and do what they say.

Each block runs in its own namespace; then every name it defines that a check below knows is
checked (a block must define at least one), and every ``.png`` it names must have been written.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from _helpers import ROOT

import hptransfer as hpt

README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _check_model(ns: dict) -> None:
    # "Parametrize your own model": a μP model whose hidden LR is scaled down, trained a few steps.
    table = hpt.scaling_table(ns["model"])
    assert {"input", "hidden", "output"} <= {info.role for info in table.params.values()}
    assert table.parametrization == "mup"


def _check_opt(ns: dict) -> None:
    lrs = {g["lr"] for g in ns["opt"].param_groups}
    assert len(lrs) >= 2, f"μP gives the hidden weights their own LR; got one LR {lrs}"
    assert all(p.grad is not None for p in ns["model"].parameters() if p.requires_grad)


def _check_loss(ns: dict) -> None:
    loss = ns["loss"]
    assert isinstance(loss, torch.Tensor) and math.isfinite(loss.item())


def _check_result(ns: dict) -> None:
    # "Coordinate check with a verdict": μP on the MLP passes, and nothing is listed as failing.
    result = ns["result"]
    assert isinstance(result, hpt.CoordCheckResult)
    assert result.passed, result.summary()
    assert result.failing == []


CHECKS = {"model": _check_model, "opt": _check_opt, "loss": _check_loss, "result": _check_result}


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    if "import torch, transformers" in BLOCKS[index]:
        pytest.importorskip("transformers")  # the hf extra (installed in CI)
    ns = {"__name__": "__readme__"}
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), ns)
    checked = [name for name in CHECKS if name in ns]
    assert checked, f"README python block {index} defines none of {sorted(CHECKS)}: add a check for it here"
    for name in checked:
        CHECKS[name](ns)
    for png in re.findall(r"[\"']([^\"']+\.png)[\"']", BLOCKS[index]):
        assert (tmp_path / png).is_file(), f"README python block {index} should write {png}"
    assert capsys.readouterr().out.strip(), f"README python block {index} prints nothing"
