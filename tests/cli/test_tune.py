"""``hptransfer tune`` and ``hptransfer transfer``: exit codes 0 and 2, help with the recipe's field docs."""

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
