"""docs/integrations.md runs as written: each Python block is executed, and what it prints is checked."""

from __future__ import annotations

import importlib.util
import re

import pytest
from _helpers import ROOT

PAGE = ROOT / "docs" / "integrations.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
NEEDS = {"transformers": ("transformers", "accelerate"), "lightning": ("lightning",)}


def _block(word: str) -> str:
    (block,) = [b for b in BLOCKS if word in b]
    return block


@pytest.mark.parametrize(("word", "printed"), [
    ("custom loop:", r"custom loop: loss \d+\.\d+, group LRs \[.+\]"),
    ("Trainer:", r"Trainer: reloaded logits equal: True"),
    ("Lightning:", r"Lightning: best lr \S+, \d+ pruned, \d+ diverged"),
    ("one LR:", r"one LR: loss \d+\.\d+, q_proj's Adam LR x0\.25 lives in its forward"),
    pytest.param("compiled + bf16", r"compiled \+ bf16 autocast: loss \d+\.\d+, hidden/input LR ratio 0\.25",
                 marks=pytest.mark.slow),  # torch.compile takes 15-40 s on 2 cores
])
def test_each_example_on_the_integrations_page_runs(word, printed, tmp_path, monkeypatch, capsys):
    block = _block(word)
    for module in NEEDS.get("transformers" if "import transformers" in block else
                            "lightning" if "import lightning" in block else "", ()):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the hf / lightning extras)")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(PAGE), "exec"), {"__name__": "__doc__"})
    assert re.search(printed, capsys.readouterr().out)


def test_the_page_has_no_untested_block():
    assert len(BLOCKS) == 5
