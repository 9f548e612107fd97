"""target.yaml: the run spec written by the schema, read back, and files of an older release
(hptransfer.targets._target_file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import hptransfer
from hptransfer.cli import main as cli_main
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


@pytest.fixture(scope="module")
def target_text(tuned: tuple, tmp_path_factory: pytest.TempPathFactory) -> str:
    rec, _ = tuned
    (target,) = hptransfer.transfer(rec, target_widths=64, out=tmp_path_factory.mktemp("t") / "t.yaml", quiet=True)
    return target.path.read_text()


def _read_or_refuse(path: Path) -> str:
    """'ok' when the file loads into a complete target, else the error (which must be a TransferError)."""
    try:
        tf = read_target(path)
    except TransferError as exc:
        return str(exc)
    assert isinstance(tf.spec.train.steps, int) and tf.spec.train.steps > 0, "a spec without its length loaded"
    hptransfer.load(path)  # whatever read_target accepts, load builds (or refuses with an HPTransferError)
    return "ok"


@pytest.mark.parametrize(("edit", "named"), [
    (lambda d: d["groups"][0].update(lr="fast"), r"groups\[0\]\.lr is 'fast' \(expected a number"),
    (lambda d: d["groups"][0].pop("params"), r"groups\[0\]: missing `params`"),
    (lambda d: d.update(groups={"a": 1}), r"groups is a mapping \(expected a list"),
    (lambda d: d["base_shapes"].update({"input.weight": "16x8"}), r"base_shapes\.input\.weight is '16x8'"),
    (lambda d: d["transfer"].update(law="magic"), r"transfer\.law is 'magic' \(expected one of none, step_law"),
    (lambda d: d["transfer"].update(warnings="none"), r"transfer\.warnings is 'none' \(expected a list"),
    (lambda d: d.update(provenance=[1]), r"provenance is a list \(expected a mapping"),
    (lambda d: d["provenance"].pop("trial"), r"provenance: missing `trial`"),
])
def test_each_hand_edit_that_breaks_the_file_is_one_line_naming_the_field(target_text, tmp_path, edit, named):
    data = yaml.safe_load(target_text)
    edit(data)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(TransferError, match=named) as err:
        hptransfer.load(tmp_path / "t.yaml")
    assert "Fix:" in str(err.value)
    assert cli_main(["train", str(tmp_path / "t.yaml"), "-q"]) == 2  # one line, no traceback


def test_a_target_file_cut_anywhere_loads_whole_or_is_refused(target_text, tmp_path):
    import random

    lines = target_text.splitlines(keepends=True)
    cuts = [len("".join(lines[:i])) for i in range(len(lines))]
    cuts += random.Random(0).sample(range(len(target_text)), 60)
    loaded = 0
    for cut in cuts:
        (tmp_path / "t.yaml").write_text(target_text[:cut])
        loaded += _read_or_refuse(tmp_path / "t.yaml") == "ok"
    raw = target_text.encode()
    for seed in range(20):  # random bytes overwritten
        rng = random.Random(seed)
        b = bytearray(raw)
        for _ in range(4):
            b[rng.randrange(len(b))] = rng.randrange(256)
        (tmp_path / "t.yaml").write_bytes(bytes(b))
        _read_or_refuse(tmp_path / "t.yaml")
    assert loaded < len(cuts)  # most cuts lose a required part
