"""target.yaml: the run spec written by the schema, read back, and files of an older release
(hptransfer.targets._target_file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import hptransfer
from hptransfer.errors import TransferError
from hptransfer.targets import read_target


def test_target_file_round_trips_the_spec(tuned: tuple, tmp_path: Path) -> None:
    """load(write(spec)) == spec: target.yaml is the run spec written by the schema."""
    rec, _ = tuned
    (target,) = hptransfer.transfer(rec, target_widths=64, out=tmp_path / "t.yaml", quiet=True)
    back = read_target(target.path)
    assert back.spec == target.spec and back.spec == rec.at(64, target.values)
    assert hptransfer.load(target.path).spec == target.spec
    # A hand edit that breaks the schema names the field.
    text = target.path.read_text().replace("name: adamw", "name: adamx")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(TransferError, match=r"optimizer\.name"):
        read_target(tmp_path / "bad.yaml")


def test_a_target_file_of_the_previous_release_gives_the_rerun_command(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"width": 64, "values": {"lr": 0.01}, "parametrization": {"name": "mup"},
                                   "optimizer": {"name": "adamw"}, "provenance": {"hptransfer_version": "0.1.0"}}))
    with pytest.raises(TransferError, match=r"written by hptransfer 0\.1\.0.*rerun `hptransfer transfer RECIPE`"):
        hptransfer.load(old)
