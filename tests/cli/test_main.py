"""The command line's entry points: ``python -m hptransfer`` and the top-level options."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from _helpers import ROOT

import hptransfer


def test_python_dash_m_hptransfer_prints_the_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "hptransfer", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"hptransfer {hptransfer.__version__}"


def test_user_code_in_the_current_directory_imports_and_its_failure_exits_2(tmp_path) -> None:
    # As the console script runs: `-P` keeps the current directory off sys.path (python -m adds it).
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self, width):
                super().__init__()
                self.a, self.b = nn.Linear(32, width), nn.Linear(width, 10)

            def forward(self, x):
                if x.shape[0] > 2:
                    raise ValueError("batch too large for this net")
                return self.b(torch.relu(self.a(x)))

        def build(width):
            return Net(width)
    """))
    (tmp_path / "r.yaml").write_text("model: {factory: 'my_models:build'}\ntask: {name: classification}\n"
                                     "widths: {proxy: 16, target: 32}\ntrain: {batch_size: 8, steps: 5}\n"
                                     "search: {lr: {type: log_float, low: 0.001, high: 0.1}}\n")
    code = ("from hptransfer.cli import main; raise SystemExit(main(['coord-check', 'r.yaml', '--widths', '16,32', "
            "'--steps', '1', '--seeds', '1']))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "your code raised ValueError: batch too large" in proc.stderr
    assert "my_models.py:12 in forward" in proc.stderr and "Traceback" not in proc.stderr
