"""The shared file helpers (hptransfer._io): atomic writes."""

from __future__ import annotations

from pathlib import Path

from hptransfer._io import write_text_atomic


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "target.yaml"
    write_text_atomic(path, "a: 1\n")
    write_text_atomic(path, "a: 2\n")
    assert path.read_text() == "a: 2\n"
    assert [p.name for p in path.parent.iterdir()] == ["target.yaml"]
