"""``hptransfer tune`` and ``hptransfer transfer``: exit codes 0 and 2 (also for user code failing in spawned
workers), help with the recipe's field docs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
    pytest.param({"name": "classification", "kwargs": {"n_train": 256, "n_val": 128}},
                 "the model factory failed at width=16 (the proxy width): default: RuntimeError: weights.pt not found",
                 "Fix: fix the factory so it builds at this width", marks=pytest.mark.slow),  # 5 s; the next guards
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


def test_hptransfers_warnings_are_one_line_each_on_the_command_line(tmp_path: Path) -> None:
    # A real process: pytest records warnings itself, so only the command as a user runs it shows the format.
    recipe = write_tiny(tmp_path, train={"batch_size": 8, "steps": 5}, transfer={"steps": 10},
                        tune={"trials": 1, "sampler": "random"})
    proc = subprocess.run([sys.executable, "-m", "hptransfer", "tune", str(recipe), "-q", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hptransfer tune: warning: known breaker of μTransfer: [horizon]" in proc.stderr
    assert "UserWarning" not in proc.stderr and "HPTransferWarning" not in proc.stderr and ".py:" not in proc.stderr


_SLOW_LOOP = '''
import pathlib, time

def train(hp, *, width, seed, report):
    pathlib.Path(__file__).with_name("started").touch()
    for step in range(600):
        report(step, 1.0)
        time.sleep(0.05)
    return 1.0
'''


def test_sigterm_stops_tuning_like_ctrl_c_and_leaves_no_trial_running(tmp_path: Path) -> None:
    """A scheduler's preemption (SIGTERM) used to kill the command between two journal records, with its
    trial left RUNNING; now the trial is failed and re-queued and the command exits 130."""
    import optuna
    from optuna.trial import TrialState

    (tmp_path / "slow_loop.py").write_text(_SLOW_LOOP)
    recipe = write_tiny(tmp_path, task={"train_fn": "slow_loop:train"}, tune={"trials": 3, "sampler": "random"})
    proc = subprocess.Popen([sys.executable, "-m", "hptransfer", "tune", str(recipe), "-q", "--out",
                             str(tmp_path / "run")], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; the study is consistent" in err and "Traceback" not in err
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "run" / "study.journal")))
    states = [t.state for t in optuna.load_study(study_name="tiny", storage=storage).trials]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # failed, and its parameters re-queued for the rerun


@pytest.mark.parametrize("command", [["tune", "--workers", "2"], pytest.param(
    ["check", "--workers", "2", "--widths", "16,32,64"], marks=pytest.mark.slow)])  # 7 s each; tune guards
def test_sigterm_reaches_worker_processes_and_no_traceback_is_printed(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "slow_loop.py").write_text(_SLOW_LOOP)
    recipe = write_tiny(tmp_path, task={"train_fn": "slow_loop:train"}, tune={"trials": 3, "sampler": "random"})
    proc = subprocess.Popen([sys.executable, "-m", "hptransfer", command[0], str(recipe), "-q", "--out",
                             str(tmp_path / "run"), *command[1:]], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while not (tmp_path / "started").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # to the command alone, as `kill` does (not to its process group)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err and "failed with" not in err, err
    assert time.monotonic() - start < 15  # the workers stopped at once, not after the 20 s grace and a kill


def test_a_database_that_refuses_the_first_connection_is_named_as_such(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """Not 'lost the connection ... the study is kept' (exit 3): there never was one, and no study."""
    pytest.importorskip("psycopg")
    recipe = write_tiny(tmp_path, tune={"trials": 1, "sampler": "random",
                                        "storage": "postgresql://nobody@127.0.0.1:1/nodb"})
    assert cli.main(["tune", str(recipe), "-q", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot open 'postgresql://nobody@127.0.0.1:1/nodb'" in err and "Connection refused" in err
    assert "lost the connection" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _worker_pids(parent: int) -> list[int]:
    """The spawned worker processes of ``parent`` (not multiprocessing's resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return sorted(pids)


_GATED_LOOP = _SLOW_LOOP.replace("        time.sleep(0.05)", """\
        if pathlib.Path(__file__).with_name("release").exists():
            break
        time.sleep(0.05)""")


def _start_slow(tmp_path: Path, command: list[str], workers: int = 2, **popen: object) -> subprocess.Popen:
    """The command on a train_fn whose runs last 30 s, or until a file ``release`` appears; returns once
    ``workers`` worker processes (0: in-process) are inside a run."""
    (tmp_path / "slow_loop.py").write_text(_GATED_LOOP)
    recipe = write_tiny(tmp_path, task={"train_fn": "slow_loop:train"}, tune={"trials": 3, "sampler": "random"})
    proc = subprocess.Popen([sys.executable, "-m", "hptransfer", command[0], str(recipe), "-q", "--out",
                             str(tmp_path / "run"), *command[1:]], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            **popen)  # type: ignore[call-overload]
    deadline = time.monotonic() + 90
    while (len(_worker_pids(proc.pid)) < workers or not (tmp_path / "started").exists()) \
            and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)  # both workers inside a run
    return proc


@pytest.mark.slow  # 7 s; SIGTERM to the command: test_sigterm_stops_tuning_like_ctrl_c guards the default run
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through /proc")
def test_sigterm_to_the_whole_job_leaves_no_trial_running(tmp_path: Path) -> None:
    """A scheduler stops a job by sending SIGTERM to every process in it. Workers used to die at once on
    it, leaving their trials RUNNING until the stale-trial grace; now each records its trial as failed."""
    import optuna
    from optuna.trial import TrialState

    proc = _start_slow(tmp_path, ["tune", "--workers", "2"], start_new_session=True)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "run" / "study.journal")))
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and not any(t.state == TrialState.RUNNING for t in trials)
    # recorded by the workers themselves, not found RUNNING and failed by the parent's stale recovery
    assert all(t.user_attrs.get("interrupted") for t in failed), [t.user_attrs for t in failed]


@pytest.mark.slow  # 9 s; the tune worker's twin above guards the default run
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through /proc")
def test_a_check_worker_interrupted_alone_does_not_pass_for_finished(tmp_path: Path) -> None:
    # It used to exit 0, and the check went on to a verdict on a grid with its runs missing.
    proc = _start_slow(tmp_path, ["check", "--workers", "2", "--widths", "16,32,64"])
    os.kill(_worker_pids(proc.pid)[0], signal.SIGINT)
    time.sleep(1.0)
    (tmp_path / "release").touch()  # the other worker's runs now end at once
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    assert "stopped by a SIGINT or SIGTERM sent to the worker alone (exit 130)" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["tune"], pytest.param(["check", "--widths", "16,32,64"],
                                                            marks=pytest.mark.slow)])  # 7 s; tune guards
def test_a_journal_deleted_under_a_running_study_is_one_line_and_exit_3(tmp_path: Path, command: list[str]) -> None:
    # Optuna read the new file from the old offset: JSONDecodeError, masked by an UnboundLocalError
    # traceback from its trial loop, exit 1.
    proc = _start_slow(tmp_path, command, workers=0)
    (tmp_path / "run" / "study.journal").unlink()
    (tmp_path / "release").touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "the study journal" in err and "changed while this process was using it" in err
    assert "Traceback" not in err


_SWALLOWS_CTRL_C = '''
import pathlib, time

def train(hp, *, width, seed, report):
    pathlib.Path(__file__).with_name("started").touch()
    for step in range(10**6):
        try:
            report(step, 1.0)
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass  # user code that swallows Ctrl-C
    return 1.0
'''


@pytest.mark.slow  # about 25 s: the parent's 20 s grace for the workers, then it kills them
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through /proc")
def test_workers_whose_code_swallows_ctrl_c_are_still_stopped(tmp_path: Path) -> None:
    # Review finding: a worker ignores signals after the first; with a train_fn that catches
    # KeyboardInterrupt the parent terminated it (ignored) and waited forever.
    (tmp_path / "swallow.py").write_text(_SWALLOWS_CTRL_C)
    recipe = write_tiny(tmp_path, task={"train_fn": "swallow:train"}, tune={"trials": 3, "sampler": "random"})
    proc = subprocess.Popen([sys.executable, "-m", "hptransfer", "tune", str(recipe), "-q", "--out",
                             str(tmp_path / "run"), "--workers", "2"], cwd=tmp_path, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 90
    while (len(_worker_pids(proc.pid)) < 2 or not (tmp_path / "started").exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _worker_pids(proc.pid)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # none left running
