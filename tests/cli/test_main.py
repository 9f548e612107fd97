"""The command line's entry points: ``python -m hptransfer`` and the top-level options."""

from __future__ import annotations

import subprocess
import sys

import hptransfer


def test_python_dash_m_hptransfer_prints_the_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "hptransfer", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"hptransfer {hptransfer.__version__}"
