"""The shared file helpers (hptransfer._io): atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hptransfer._io import write_text_atomic


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "target.yaml"
    write_text_atomic(path, "a: 1\n")
    write_text_atomic(path, "a: 2\n")
    assert path.read_text() == "a: 2\n"
    assert [p.name for p in path.parent.iterdir()] == ["target.yaml"]


def test_written_files_follow_the_umask_not_0600(tmp_path: Path) -> None:


    old = os.umask(0o022)
    try:
        mode = write_text_atomic(tmp_path / "a.yaml", "x: 1\n").stat().st_mode & 0o777
    finally:
        os.umask(old)
    assert mode == 0o644


def test_only_the_last_folder_of_an_output_path_is_created(tmp_path: Path) -> None:

    assert write_text_atomic(tmp_path / "new" / "a.txt", "x").exists()
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        write_text_atomic(tmp_path / "missing" / "deeper" / "a.txt", "x")
    assert not (tmp_path / "missing").exists()
