"""``hptransfer tune`` and ``hptransfer transfer``: exit codes 0 and 2 (also for user code failing in spawned
workers), help with the recipe's field docs."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import write_tiny

from hptransfer import cli


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = write_tiny(tmp_path, tune={"trials": 2, "sampler": "random"})
    out = str(tmp_path / "run")
    # Bad input: 2, one line, no traceback.
    assert cli.main(["tune", str(tmp_path / "missing.yaml")]) == 2
    assert cli.main(["tune", str(recipe), "--workers", "0"]) == 2
    assert cli.main(["tune", str(recipe), "--sampler", "nope"]) == 2
    assert cli.main(["transfer", str(recipe), "--out", out, "-q"]) == 2  # no study yet
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no study named" in err
    # Success: 0.
    assert cli.main(["tune", str(recipe), "--out", out, "-q", "--set", "train.steps=20"]) == 0
    assert cli.main(["transfer", str(recipe), "--out", out, "-q", "--set", "train.steps=20", "--width", "32"]) == 0
    assert "width 32" in capsys.readouterr().out
    assert cli.main(["tune", "--help"]) == 0
    assert "train.steps" in capsys.readouterr().out  # recipe field docs in the help


_USER_CODE = '''
import multiprocessing
from torch import nn


def build(width):  # works in the command's own process (which checks it), fails in a spawned worker
    if multiprocessing.current_process().name != "MainProcess":
        raise RuntimeError("weights.pt not found from this process")
    return nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, 10))


def train(hp, *, width, seed, report):
    raise ValueError("my training loop is broken")
'''


@pytest.mark.parametrize("task, named, fix", [
    ({"name": "classification", "kwargs": {"n_train": 256, "n_val": 128}},
     "the model factory failed at width=16 (the proxy width): default: RuntimeError: weights.pt not found",
     "Fix: fix the factory so it builds at this width"),
    ({"train_fn": "worker_user_code:train"}, "your code raised ValueError: my training loop is broken (at ",
     "worker_user_code.py:13 in train). Fix: correct it there"),
])
def test_user_code_failing_in_spawned_workers_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch, task: dict,
                                                                 named: str, fix: str) -> None:
    (tmp_path / "worker_user_code.py").write_text(_USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers start with the parent's sys.path
    recipe = write_tiny(tmp_path, model={"factory": "worker_user_code:build"}, task=task,
                        train={"batch_size": 8, "steps": 5}, tune={"trials": 2, "sampler": "random"})
    assert cli.main(["tune", str(recipe), "-q", "--workers", "2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "crashed" not in err
    assert f"hptransfer tune: error: worker process 0: {named}" in err.replace("worker process 1", "worker process 0")
    assert fix in err
