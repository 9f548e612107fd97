"""``hptransfer train``: the target from target.yaml; checkpoints resume exactly; DDP matches one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hptransfer
from hptransfer.errors import TrainingError
from hptransfer.targets import train_target


@pytest.fixture(scope="module")
def target(tuned, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _rec, res = tuned
    out = tmp_path_factory.mktemp("train")
    hptransfer.transfer(res, out=out, quiet=True)
    return out / "target.yaml"


def test_checkpoint_resume_trains_exactly_as_one_run(target: Path, tmp_path: Path) -> None:
    whole = train_target(target, out=tmp_path / "whole", steps=12)
    ckpt = tmp_path / "c.pt"
    first = train_target(target, out=tmp_path / "a", steps=12, stop=5, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)  # plain tensors and numbers: no pickled code
    assert state["step"] == 5 and "model" in state and "optimizer" in state
    rest = train_target(target, out=tmp_path / "b", steps=12, resume=ckpt)
    assert first["losses"] + rest["losses"] == whole["losses"]  # bit for bit, every step
    assert rest["val_loss"] == whole["val_loss"] and rest["steps"] == 12 and rest["start"] == 5


def test_resume_from_another_file_is_refused(target: Path, tmp_path: Path) -> None:
    bad = tmp_path / "x.pt"
    torch.save({"hptransfer_checkpoint": 1, "width": 3, "step": 1}, bad)
    with pytest.raises(TrainingError, match="not a checkpoint of this target"):
        train_target(target, out=tmp_path, resume=bad)


@pytest.mark.slow  # torchrun starts 2 processes: ~15 s
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_processes_match_one_process(target: Path, tmp_path: Path, mode: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "hptransfer", "train", str(target), "--out", str(tmp_path / "one"),
                          "--steps", "20"], capture_output=True, text=True, env=env, timeout=300)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "hptransfer",
                          "train", str(target), "--out", str(tmp_path / "two"), "--steps", "20",
                          *(["--fsdp"] if mode == "fsdp2" else [])],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a = json.loads((tmp_path / "one" / "train_result.json").read_text())
    b = json.loads((tmp_path / "two" / "train_result.json").read_text())
    assert a["world_size"] == 1 and b["world_size"] == 2 and a["global_batch"] == b["global_batch"]
    assert b["parallel"] == mode
    # same global batch: the same run up to float summation order
    assert max(abs(x - y) for x, y in zip(a["losses"], b["losses"])) < 1e-5
    assert abs(a["val_loss"] - b["val_loss"]) < 1e-5 * a["val_loss"]
