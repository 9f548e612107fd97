"""A recipe whose model and training are the user's own code: every CLI stage runs end to end.

The redesign's acceptance test: before the one build path, ``hptransfer run`` tuned such a
recipe and then crashed at the target run (it assumed a built-in task).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hptransfer.cli import main

USER_CODE = '''
import math
from hptransfer.models import mlp

def build(*, d_model, depth=2):
    return mlp(d_model, depth=depth)

def train(hp, *, width, seed, report):
    # A loss bowl in log2(lr) centred on 2**-7 whatever the width (what μP promises), a little
    # seed noise, and wider slightly better; report() is called every step as documented.
    base = 1.0 + 0.05 * (math.log2(hp["lr"]) + 7.0) ** 2 + 0.001 * seed - 0.01 * math.log2(width / 16)
    for step in range(6):
        report(step, base + 1.0 / (step + 1))
    return base
'''


@pytest.fixture()
def user_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "user_project.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    recipe = {
        "name": "user_fn", "out": str(tmp_path / "run"),
        "model": {"factory": "user_project:build", "width_arg": "d_model"},
        "task": {"train_fn": "user_project:train"},
        "train": {"batch_size": 8, "steps": 6, "seeds": [0]},
        "widths": {"proxy": 16, "target": 64},
        "search": {"lr": {"type": "log_float", "low": 2.0 ** -11, "high": 2.0 ** -3}},
        "tune": {"trials": 12, "sampler": "random"},
        "check": {"widths": [16, 32, 64], "seeds": [0, 1]},
    }
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow  # 8 s end to end; each stage's fast guard: test_front_doors.py, tests/tuning/test_tune.py
def test_tune_transfer_run_and_check_on_the_users_own_train_fn(user_recipe: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    run_dir = user_recipe.parent / "run"
    assert main(["tune", str(user_recipe), "--quiet"]) == 0
    assert main(["transfer", str(user_recipe), "--quiet"]) == 0
    target = yaml.safe_load((run_dir / "target.yaml").read_text())
    assert target["spec"]["width"] == 64 and target["spec"]["task"]["train_fn"] == "user_project:train"
    # The whole job: tune (resumes the finished study), transfer, the target run through the user's
    # function, the summary. Exit 0 means the target run converged and was not worse than the proxy.
    assert main(["run", str(user_recipe), "--quiet"]) == 0
    record = json.loads((run_dir / "target_run.json").read_text())
    assert record["width"] == 64 and record["diverged"] is False and len(record["losses"]) == 6
    assert "Verdict: PASS" in (run_dir / "summary.md").read_text()
    # The check sweeps the same function at three widths; its optimum does not move.
    capsys.readouterr()
    code = main(["check", str(user_recipe), "--json", str(run_dir / "check.json")])
    report = json.loads((run_dir / "check.json").read_text())
    assert code == 0 and report["passed"] is True
    (res,) = report["results"]
    assert abs(res["drift"]["slope"]) < 0.05
