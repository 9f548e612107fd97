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
    torch.save({"hptransfer_checkpoint": 1, "width": 3, "step": 1, "model": {}, "optimizer": {}}, bad)
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


@pytest.fixture(scope="module")
def checkpoint(target: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ckpt = tmp_path_factory.mktemp("ckpt") / "c.pt"
    train_target(target, out=ckpt.parent, steps=12, stop=5, checkpoint=ckpt)
    return ckpt


def _other_target(target: Path, tmp_path: Path, **changes) -> Path:
    import yaml

    data = yaml.safe_load(target.read_text())
    data["spec"].update(changes)
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "other.yaml"


@pytest.mark.parametrize(("content", "named"), [
    (b"\x00\x01random bytes\xff" * 8, "not a readable checkpoint"),
    (b"", "not a readable checkpoint"),
    ([1, 2, 3], "not an hptransfer checkpoint"),
    ({"hptransfer_checkpoint": 2, "step": 1, "optimizer": {}}, "not an hptransfer checkpoint"),
])
def test_resume_refuses_a_corrupt_or_foreign_file_in_one_line(target, tmp_path, content, named):
    bad = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        torch.save(content, bad)
    with pytest.raises(TrainingError, match=named):
        train_target(target, out=tmp_path, steps=12, resume=bad)
    from hptransfer.cli import main

    assert main(["train", str(target), "--out", str(tmp_path), "--resume", str(bad), "-q"]) == 2


def test_resume_refuses_another_targets_checkpoint_and_a_step_past_the_schedule(target, checkpoint, tmp_path):
    other = _other_target(target, tmp_path, seed=7)  # same shapes and values, another seed: another run
    with pytest.raises(TrainingError, match="another target at the same width"):
        train_target(other, out=tmp_path, steps=12, resume=checkpoint)
    with pytest.raises(TrainingError, match=r"step 5 is past this schedule of 3 steps"):
        train_target(target, out=tmp_path, steps=3, resume=checkpoint)
    with pytest.raises(TrainingError, match=r"schedule of 12 steps, resumed with 20.*--steps 12"):
        train_target(target, out=tmp_path, steps=20, resume=checkpoint)
    assert not (tmp_path / "train_result.json").exists()  # nothing recorded for a refused resume


def test_an_unwritable_checkpoint_path_is_refused_before_training(target, tmp_path):
    for bad, named in ((tmp_path / "missing" / "c.pt", "cannot write there"), (tmp_path, "is a folder")):
        with pytest.raises(TrainingError, match=named):
            train_target(target, out=tmp_path, steps=12, checkpoint=bad)
    assert not (tmp_path / "train_result.json").exists() and not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_that_fails_to_write_keeps_the_state_elsewhere(target, tmp_path, monkeypatch):
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if str(f).endswith(".tmp"):
            real_save(obj, f, *a, **k)  # half written, then the disk is full
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(TrainingError, match=r"No space left.*kept in (\S+)\. Fix") as err:
        train_target(target, out=tmp_path, steps=12, stop=3, checkpoint=tmp_path / "c.pt")
    kept = Path(str(err.value).split("kept in ")[1].split(". Fix")[0])
    monkeypatch.undo()
    assert torch.load(kept, weights_only=True)["step"] == 3 and not list(tmp_path.glob("*.tmp"))
    rest = train_target(target, out=tmp_path / "b", steps=12, resume=kept)
    assert rest["start"] == 3 and rest["steps"] == 12
    kept.unlink()
