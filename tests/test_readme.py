"""The README's examples run as written and do what they say.

Each ```python block runs in its own namespace; then every name it defines that a check below knows
is checked (a block must define at least one), and every ``.png`` it names must have been written.
A block that starts with a file name comment (``# my_model.py``, ``# my_recipe.yaml``) is that file:
the recipe example is written out with its model file and run with ``hptransfer run`` as the README
says. The README stays a front page: at most 1,500 words, each example at most 25 lines.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from _helpers import ROOT

import hptransfer as hpt

README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
FILES = dict(re.findall(r"```(?:python|yaml)\n# ([\w.]+\.(?:py|yaml))[^\n]*\n(.*?)```", TEXT, flags=re.S))
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", TEXT, flags=re.S) if not re.match(r"# [\w.]+\.py\b", b)]
# The examples that moved from the README to docs/ run here too.
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "huggingface.md").read_text(encoding="utf-8"),
                        flags=re.S)


def _check_model(ns: dict) -> None:
    # "Parametrize your own model": a μP model whose hidden LR is scaled down, trained a few steps.
    table = hpt.scaling_table(ns["model"])
    assert {"input", "hidden", "output"} <= {info.role for info in table.params.values()}
    assert table.parametrization == "mup"


def _check_opt(ns: dict) -> None:
    lrs = {g["lr"] for g in ns["opt"].param_groups}
    assert len(lrs) >= 2, f"μP gives the hidden weights their own LR; got one LR {lrs}"
    if "loss" in ns:  # a block that trains: every parameter got a gradient
        assert all(p.grad is not None for p in ns["model"].parameters() if p.requires_grad)


def _check_target(ns: dict) -> None:
    # "Your own model in Python": the tuned LR carried to width 1024, nothing invented beside it.
    target, tuned = ns["target"], ns["tuned"]
    assert tuned.best_values == {"lr": target.values["lr"]}  # what train_fn was handed: the LR alone
    assert target.width == 1024 and target.spec.parametrization.base_width == 64
    assert target.spec.optimizer is None and ns["model"].width == 1024


def _check_loss(ns: dict) -> None:
    loss = ns["loss"]
    assert isinstance(loss, torch.Tensor) and math.isfinite(loss.item())


def _check_result(ns: dict) -> None:
    # "Coordinate check with a verdict": μP on the MLP passes, and nothing is listed as failing.
    result = ns["result"]
    assert isinstance(result, hpt.CoordCheckResult)
    assert result.passed, result.summary()
    assert result.failing == []


CHECKS = {"model": _check_model, "opt": _check_opt, "loss": _check_loss, "result": _check_result,
          "target": _check_target}


def test_readme_has_examples_and_is_a_front_page():
    assert len(BLOCKS) >= 1 and {"my_model.py", "my_recipe.yaml"} <= set(FILES)
    assert len(TEXT.split()) <= 1500
    for block in [*BLOCKS, *FILES.values()]:
        assert len(block.strip().splitlines()) <= 25, block[:80]


@pytest.mark.slow  # 20 s, the README's recipe as written; a tiny end-to-end run: tests/targets/test_job.py
def test_readme_recipe_example_runs(tmp_path, monkeypatch, capsys):
    from hptransfer.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, body in FILES.items():
        (tmp_path / name).write_text(body)
    assert main(["run", "my_recipe.yaml", "-q"]) == 0, capsys.readouterr()
    assert (tmp_path / "runs" / "my_model" / "summary.md").is_file()


@pytest.mark.parametrize("index", range(len(BLOCKS) + len(DOC_BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    block = (BLOCKS + DOC_BLOCKS)[index]
    if "import torch, transformers" in block:
        pytest.importorskip("transformers")  # the hf extra (installed in CI)
    ns = {"__name__": "__readme__"}
    exec(compile(block, f"README.md[python block {index}]", "exec"), ns)
    checked = [name for name in CHECKS if name in ns]
    assert checked, f"README python block {index} defines none of {sorted(CHECKS)}: add a check for it here"
    for name in checked:
        CHECKS[name](ns)
    for png in re.findall(r"[\"']([^\"']+\.png)[\"']", block):
        assert (tmp_path / png).is_file(), f"README python block {index} should write {png}"
    assert capsys.readouterr().out.strip(), f"README python block {index} prints nothing"
