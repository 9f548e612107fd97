"""Tuning: divergence, resume, killed workers, several workers, pruning, the Python API."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from _helpers import hpt_warns, no_warnings
from optuna.trial import TrialState

from hptransfer.errors import ExitCode, HPTransferError, StorageError
from hptransfer.recipe import parse_recipe
from hptransfer.studies import _storage
from hptransfer.tuning import tune
from hptransfer.tuning._objective import Reporter
from hptransfer.tuning._samplers import make_sampler
from hptransfer.tuning._settings import parse_space


def tiny(tmp_path: Path, **tune_opts: object) -> dict:
    """A recipe whose trials take ~0.1 s: MLP width 16, 20 steps."""
    return {
        "name": "tiny", "out": str(tmp_path / "run"),
        "model": {"name": "mlp"}, "task": {"name": "classification", "kwargs": {"n_train": 512, "n_val": 256}},
        "train": {"batch_size": 32, "steps": 20},
        "widths": {"proxy": 16, "target": 64},
        "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}},
        "tune": {"trials": 4, "sampler": "random", **tune_opts},
    }


def _trials(res_or_url: object, name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    url = res_or_url.storage if hasattr(res_or_url, "storage") else _storage.storage_url(str(res_or_url), ".")
    return _storage.load_study(url, name).get_trials()


def test_recipe_tune_uses_journal_and_counts_trials(tmp_path: Path) -> None:
    res = tune(tiny(tmp_path), quiet=True)
    assert res.storage.startswith("journal://") and (tmp_path / "run" / "study.journal").exists()
    assert res.n_complete == 4 and res.n_failed == 0
    assert 1e-3 <= res.best_values["lr"] <= 1e-1 and res.best_values["beta2"] == 0.999
    assert math.isfinite(res.best_value)
    # Resume: the same call adds nothing; a larger total adds the difference.
    assert tune(tiny(tmp_path), quiet=True).n_complete == 4
    assert tune(tiny(tmp_path, trials=6), quiet=True).n_complete == 6
    assert sorted(t.number for t in _trials(res)) == list(range(6))


def test_a_study_of_another_recipe_is_refused_naming_the_fields_that_changed(tmp_path: Path) -> None:
    """Trials trained under other settings would be compared with, and transferred as, this recipe's."""
    import copy

    from hptransfer.errors import TuneError

    tune(tiny(tmp_path), quiet=True)
    shorter = copy.deepcopy(tiny(tmp_path))
    shorter["train"]["steps"], shorter["optimizer"] = 10, {"name": "sgd"}
    with pytest.raises(TuneError, match=r"holds 4 trial\(s\) of another recipe: optimizer.name: 'adamw' -> 'sgd'; "
                                        r"train.steps: 20 -> 10\. Fix: start a new study"):
        tune(shorter, quiet=True)
    # the budget and the target widths are not part of what a trial measured: continued, no warning
    more = tiny(tmp_path, trials=5)
    more["widths"]["target"] = 128
    with no_warnings():
        assert tune(more, quiet=True).n_complete == 5
    shorter["tune"]["study"] = "tiny-short"  # the fix the message names
    assert tune(shorter, quiet=True).n_complete == 4


def test_diverging_trial_is_recorded_and_study_continues(tmp_path: Path) -> None:
    def train_fn(hp: dict, *, report: Reporter) -> float:
        loss = 2.0
        for step in range(30):
            loss = loss * (1.3 if hp["lr"] > 1.0 else 0.97)  # large LR explodes, small LR learns
            report(step, loss)
        return loss

    res = tune(train_fn, space={"lr": ("log_float", 0.01, 100.0)}, width=16, trials=10, sampler="random",
               storage=str(tmp_path / "s.journal"), quiet=True)
    trials = _trials(res, res.study_name)
    diverged = [t for t in trials if t.user_attrs.get("diverged")]
    healthy = [t for t in trials if t.user_attrs.get("diverged") is False]
    assert diverged and healthy and len(trials) == 10
    for t in diverged:
        assert t.state == TrialState.COMPLETE and math.isfinite(t.value)  # never NaN, never FAIL
        assert t.constraints == {"diverged": 1.0} and t.value == pytest.approx(2.0 * 1.3)  # penalty: first loss
    assert all(t.constraints == {"diverged": 0.0} for t in healthy)
    assert res.best_params["lr"] <= 1.0 and res.n_diverged == len(diverged)


def test_builtin_divergence_never_crashes(tmp_path: Path) -> None:
    data = tiny(tmp_path, trials=2)
    data["optimizer"] = {"name": "sgd"}
    data["search"] = {"lr": {"type": "log_float", "low": 1e4, "high": 1e5}}
    with pytest.raises(HPTransferError, match="no finished, non-diverged trial"):
        tune(data, quiet=True)
    trials = _trials(f"journal://{tmp_path / 'run' / 'study.journal'}")
    assert len(trials) == 2 and all(t.user_attrs["diverged"] and t.state == TrialState.COMPLETE for t in trials)
    assert all(t.value == pytest.approx(math.log(10)) for t in trials)  # the untrained loss
    assert all(t.user_attrs["train_steps"] < 20 for t in trials)  # stopped early
    for t in trials:  # one reason, carrying the loss that tripped the guard (not the last finite one)
        reason = t.user_attrs["diverged_reason"]
        assert reason.count("training diverged") == 1, reason
        loss = float(reason.rsplit("loss=", 1)[1].rstrip(")"))
        assert not math.isfinite(loss) or loss > 3 * math.log(10), reason


def test_resume_after_killed_worker_requeues_its_params(tmp_path: Path) -> None:
    data = tiny(tmp_path, trials=3)
    url = _storage.storage_url(None, tmp_path / "run")
    _storage.create_study(url, "tiny")
    # A worker that starts a trial and is then killed with SIGKILL: its trial stays RUNNING.
    # (Plain optuna, as _storage.mark_worker records it, so the child does not import torch.)
    script = (
        "import os, signal, socket, optuna\n"
        f"st = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend({url[10:]!r}))\n"
        "s = optuna.load_study(storage=st, study_name='tiny')\n"
        "t = s.ask()\n"
        "t.suggest_float('lr', 1e-3, 1e-1, log=True)\n"
        "t.set_user_attr('worker_host', socket.gethostname())\n"
        "t.set_user_attr('worker_pid', os.getpid())\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9
    before = _trials(url)
    assert [t.state for t in before] == [TrialState.RUNNING]
    lost_lr = before[0].params["lr"]
    with hpt_warns("re-queued"):
        res = tune(data, quiet=True)
    trials = _trials(url)
    assert trials[0].state == TrialState.FAIL
    requeued = [t for t in trials if t.user_attrs.get("requeued_from") == 0]
    assert len(requeued) == 1 and requeued[0].params["lr"] == lost_lr and requeued[0].state == TrialState.COMPLETE
    assert res.n_complete == 3  # the failed trial does not count toward the total
    # Recovery is idempotent: a second start re-queues nothing more.
    assert _storage.recover_stale(_storage.load_study(url, "tiny")) == []


def test_ctrl_c_leaves_a_consistent_study(tmp_path: Path) -> None:
    calls = {"n": 0}

    def train_fn(hp: dict, *, report: Reporter) -> float:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        report(0, 1.0)
        return abs(math.log10(hp["lr"]) + 2)

    kw = dict(space={"lr": ("log_float", 1e-4, 1.0)}, width=8, trials=4, sampler="random",
              storage=str(tmp_path / "s.journal"), quiet=True, study_name="interrupted")
    with pytest.raises(KeyboardInterrupt):
        tune(train_fn, **kw)
    trials = _trials(tmp_path / "s.journal", "interrupted")
    # The interrupted trial is failed and its parameters are already re-queued (WAITING) for the rerun.
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs["interrupted"] and trials[2].user_attrs["requeued_from"] == 1
    res = tune(train_fn, **kw)
    trials = _trials(tmp_path / "s.journal", "interrupted")
    assert res.n_complete == 4
    assert [t.params["lr"] for t in trials if t.user_attrs.get("requeued_from") == 1] == [trials[1].params["lr"]]


def _counted(trials: list, total: int) -> list:
    """Trials that count; a worker that asked after the budget was full cancelled its trial
    before training (FAIL, surplus=True, numbered after the budget)."""
    surplus = [t for t in trials if t.user_attrs.get("surplus")]
    assert all(t.state == TrialState.FAIL and t.number >= total and "worker_pid" not in t.user_attrs
               for t in surplus)
    return [t for t in trials if not t.user_attrs.get("surplus")]


def test_two_local_workers_lose_no_trial(tmp_path: Path) -> None:
    res = tune(tiny(tmp_path, trials=8), workers=2, quiet=True)
    trials = _counted(_trials(res), 8)
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(8))
    assert os.getpid() not in {t.user_attrs["worker_pid"] for t in trials}  # ran in the worker processes
    assert len({t.params["lr"] for t in trials}) == 8  # distinct sampler seeds: no duplicates


@pytest.mark.slow
def test_four_local_workers_lose_no_trial(tmp_path: Path) -> None:
    res = tune(tiny(tmp_path, trials=40), workers=4, quiet=True)
    trials = _counted(_trials(res), 40)
    assert len(trials) == 40 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(40))


def test_pruning_through_the_reporter(tmp_path: Path) -> None:
    def train_fn(hp: dict, *, report: Reporter) -> float:
        target = abs(math.log10(hp["lr"]) + 2)  # best at lr = 1e-2
        for step in range(20):
            report(step, target + 1.0 / (step + 1))
        return target

    res = tune(train_fn, space={"lr": ("log_float", 1e-5, 1.0)}, width=8, steps=20, trials=16, sampler="random",
               pruner="median", storage=str(tmp_path / "s.journal"), quiet=True)
    assert res.n_pruned >= 1 and res.n_complete + res.n_pruned == 16


def test_python_api_errors_are_clear() -> None:
    with pytest.raises(HPTransferError, match="space= and width="):
        tune(lambda hp: 1.0)
    with pytest.raises(HPTransferError, match="log_float"):
        parse_space({"lr": ("log_float", 0.0, 1.0)})
    with pytest.raises(HPTransferError, match="module level"):
        tune(lambda hp: 1.0, space={"lr": ("float", 1e-4, 1.0)}, width=8, workers=2, storage="/tmp/x.journal",
             quiet=True)
    with pytest.raises(StorageError, match="unknown storage scheme"):
        _storage.storage_url("redis://host", ".")
    with pytest.raises(HPTransferError, match="sampler"):
        make_sampler("cmaes")
    assert parse_recipe(tiny(Path("/tmp"))).tune.sampler == "random"


def test_recipe_with_own_factory_and_training_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_project.py").write_text(
        "from hptransfer.models import mlp\n"
        "def build(*, d_model, depth=3):\n"
        "    return mlp(d_model, depth=depth)\n"
        "def train(hp, *, width, seed, report):\n"
        "    for step in range(5):\n"
        "        report(step, 2.0 - 0.1 * step)\n"
        "    return abs(hp['lr'] - 0.01) + hp['dropout'] + width / 1000\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tiny(tmp_path, trials=3)
    data["model"] = {"factory": "my_project:build", "width_arg": "d_model", "kwargs": {"depth": 3}}
    data["task"] = {"train_fn": "my_project:train"}
    data["search"]["dropout"] = {"type": "float", "low": 0.0, "high": 0.5}  # any name: the function reads it
    res = tune(data, quiet=True)
    assert res.n_complete == 3 and set(res.best_params) == {"lr", "dropout"}
    # What the function was handed is what is reported: the searched values and the parametrization's of
    # the model the recipe names, none of the optimizer or schedule defaults it never saw.
    assert set(res.best_values) == {"lr", "dropout", "init_std", "output_mult", "attn_mult"}
    from hptransfer.targets import load, transfer

    (target,) = transfer(parse_recipe(data), quiet=True)
    assert target.config["spec"]["model"]["factory"] == "my_project:build"
    assert target.spec.extra == {"lr": res.best_params["lr"], "dropout": res.best_params["dropout"]}
    assert target.spec.parametrization is not None and target.spec.parametrization.base_width == 16
    assert target.config["spec"]["optimizer"] is None and target.config["spec"]["schedule"] is None
    assert target.config["groups"] == [] and target.config["base_shapes"]["input.weight"] == [16, 32]
    loaded = load(target.path)
    assert loaded.model.width == 64 and loaded.optimizer is None
    with pytest.raises(HPTransferError, match="records no optimizer.*build the optimizer as your train_fn does"):
        _model, _opt = loaded


@pytest.mark.parametrize("quiet", [True, False])
def test_tune_restores_optuna_verbosity(tmp_path: Path, quiet: bool) -> None:
    def train_fn(hp: dict, *, report: Reporter) -> float:
        report(0, hp["lr"])
        return hp["lr"]

    def failing_fn(hp: dict, *, report: Reporter) -> float:
        raise RuntimeError("user code failed")

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)  # a level tune() never sets itself
    try:
        tune(train_fn, space={"lr": ("float", 0.1, 1.0)}, width=8, trials=2, sampler="random",
             storage=str(tmp_path / "s.journal"), quiet=quiet)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
        with pytest.raises(RuntimeError, match="user code failed"):  # restored on the way out of an error too
            tune(failing_fn, space={"lr": ("float", 0.1, 1.0)}, width=8, trials=2, sampler="random",
                 storage=str(tmp_path / "f.journal"), quiet=quiet)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_trial_that_raises_is_reported_once_by_the_exception_not_by_optuna_too(tmp_path: Path) -> None:
    def failing_fn(hp: dict, *, report: Reporter) -> float:
        raise RuntimeError("user code failed")

    handler = _Records()
    logging.getLogger("optuna").addHandler(handler)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # other tests may have left it at ERROR
    try:
        with pytest.raises(RuntimeError, match="user code failed"):
            tune(failing_fn, space={"lr": ("float", 0.1, 1.0)}, width=8, trials=2, sampler="random",
                 storage=str(tmp_path / "f.journal"), quiet=False)
        assert not [m for m in handler.messages if "failed" in m]
        study = optuna.create_study()  # Optuna's own log outside tune() is untouched
        with pytest.raises(RuntimeError):
            study.optimize(lambda trial: failing_fn({}, report=Reporter()), n_trials=1)
        assert [m for m in handler.messages if m.startswith("Trial 0 failed with parameters")]
    finally:
        optuna.logging.set_verbosity(before)
        logging.getLogger("optuna").removeHandler(handler)


@pytest.mark.slow  # subprocesses and real trials: ~20-40 s
def test_killed_worker_exits_4_names_its_requeued_trial_and_rerun_reaches_budget(tmp_path: Path) -> None:
    import signal
    import time

    import yaml

    rec = tiny(tmp_path, trials=12)
    rec["train"]["steps"] = 150  # ~1 s trials: time to catch one running
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(rec))
    cmd = [sys.executable, "-m", "hptransfer", "tune", str(path), "-q", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    journal, victim, deadline = tmp_path / "run" / "study.journal", None, time.time() + 60
    while victim is None and time.time() < deadline:
        time.sleep(0.2)
        if journal.exists() and journal.stat().st_size:
            running = [t for t in _trials(journal) if t.state == TrialState.RUNNING and "worker_pid" in t.user_attrs]
            victim = running[0] if running else None
    assert victim is not None
    os.kill(int(victim.user_attrs["worker_pid"]), signal.SIGKILL)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    assert "Traceback" not in err and f"[{victim.number}] are re-queued" in err and "-9" in err
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    trials = [t for t in _trials(journal) if not t.user_attrs.get("surplus")]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 12 and len({t.number for t in trials}) == len(trials)
    assert any(t.user_attrs.get("requeued_from") == victim.number for t in complete)


def test_bad_input_fails_before_any_trial_naming_the_field_to_fix(tmp_path: Path,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    """A target width the model refuses fails before tuning (not after it), and a model that does not fit
    the task's data fails on one batch before a study exists (not inside trials, through Optuna's log)."""
    from hptransfer.errors import FactoryError, TrainingError

    gpt = {**tiny(tmp_path), "model": {"name": "gpt", "kwargs": {"n_layer": 1, "n_head": 4}},
           "task": {"name": "charlm", "kwargs": {"block_size": 8, "n_bytes": 20000}},
           "widths": {"proxy": 16, "target": 130}}
    with pytest.raises(FactoryError, match=r"130 is not divisible.*\[at width=130 \(the target width\), set in "
                                           r"widths.target"):
        tune(gpt, quiet=True)
    small_vocab = {**gpt, "widths": {"proxy": 16, "target": 64},
                   "model": {"name": "gpt", "kwargs": {"n_layer": 1, "n_head": 4, "vocab_size": 100}}}
    with pytest.raises(TrainingError, match=r"width=16 \(the proxy width\): the model failed on the task's first "
                                            r"batch \(input \(32, 8\) int64.*'vocab_size': 256.*IndexError"):
        tune(small_vocab, quiet=False)
    assert "Trial" not in capfd.readouterr().err  # no trial ran, so Optuna logged no failed one
    assert not (tmp_path / "run" / "study.journal").exists()


_BIDIRECTIONAL = '''
from torch import nn

class Encoder(nn.Module):  # attends both ways: on next-token prediction it reads its targets from its input
    def __init__(self, width, vocab_size=256, causal=False):
        super().__init__()
        self.emb, self.causal = nn.Embedding(vocab_size, width), causal
        self.mix = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, vocab_size)
        nn.init.zeros_(self.head.weight)  # a zero readout: the logits alone would not show it

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1]) if self.causal else None
        return self.head(self.mix(self.emb(x), src_mask=mask, is_causal=self.causal))
'''


def test_a_model_that_sees_later_tokens_is_refused_on_next_token_prediction(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A bidirectional encoder on the byte LM copies the next token from its input (a RoBERTa proxy reached
    0.24 nats in 600 steps where causal models reach 2.5): tuning it would transfer meaningless values."""
    from hptransfer.errors import TrainingError

    (tmp_path / "bidir.py").write_text(_BIDIRECTIONAL)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = {**tiny(tmp_path), "model": {"factory": "bidir:Encoder"},
            "task": {"name": "charlm", "kwargs": {"block_size": 8, "n_bytes": 20000}},
            "widths": {"proxy": 16, "target": 32}}
    with pytest.raises(TrainingError, match=r"the model sees later positions: changing each sequence's last token "
                                            r"changed the output of 'mix.*Fix: mask attention to earlier positions"):
        tune(data, quiet=True)
    assert not (tmp_path / "run" / "study.journal").exists()
    causal = {**data, "model": {"factory": "bidir:Encoder", "kwargs": {"causal": True}}, "tune": {"trials": 1}}
    assert tune(causal, quiet=True).n_complete == 1


def test_a_model_that_returns_probabilities_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hptransfer.errors import TrainingError

    (tmp_path / "probs.py").write_text(
        "from torch import nn\n\n"
        "def build(width, softmax=True):\n"
        "    layers = [nn.Linear(32, width), nn.ReLU(), nn.Linear(width, 10)]\n"
        "    return nn.Sequential(*layers, *([nn.Softmax(dim=-1)] if softmax else []))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = {**tiny(tmp_path), "model": {"factory": "probs:build"}}
    with pytest.raises(TrainingError, match=r"returns probabilities.*Fix: return the logits"):
        tune(data, quiet=True)
    data = {**data, "model": {"factory": "probs:build", "kwargs": {"softmax": False}}, "tune": {"trials": 1}}
    assert tune(data, quiet=True).n_complete == 1


def test_a_causal_model_with_channels_first_outputs_as_long_as_the_context_is_accepted() -> None:
    """A depthwise causal conv (Mamba's layout, batch x channels x positions) whose channel count equals the
    context length: its channel axis must not be read as positions."""
    from torch import nn

    from hptransfer.recipe import parse_recipe
    from hptransfer.training._preflight import _check_causal
    from hptransfer.zoo import get_task

    class CausalConv(nn.Module):
        def __init__(self, d: int = 64) -> None:
            super().__init__()
            self.emb, self.head = nn.Embedding(256, d), nn.Linear(d, 256)
            self.conv = nn.Conv1d(d, d, 4, groups=d, padding=3)

        def forward(self, x):
            return self.head(self.conv(self.emb(x).transpose(1, 2))[..., :x.shape[1]].transpose(1, 2))

    task = get_task("charlm", block_size=64, n_bytes=20000)
    _check_causal(CausalConv(), task, task.batch(0, 64)[0], parse_recipe(tiny(Path("."))))  # no error


def test_a_worker_that_cannot_open_the_storage_the_parent_opened_reports_a_lost_connection(monkeypatch, capsys,
                                                                                           tmp_path):
    # Exit 3 (lost, rerun) lets the parent say "lost the connection"; before, the worker's
    # "cannot open ... check the URL" came back as a bad-input error (exit 2) for a URL that had worked.
    import types

    from hptransfer import studies
    from hptransfer.errors import StorageError
    from hptransfer.tuning import _tune

    def refused(*args, **kwargs):
        raise StorageError("tune.storage: cannot open 'postgresql://db:5432/x': OperationalError: Connection refused")

    monkeypatch.setattr(studies._storage, "load_study", refused)
    monkeypatch.setattr(studies._workers.signal, "signal", lambda *a: None)  # the worker's handlers: not in pytest
    job = _tune._Job(url="postgresql://u:secret@db:5432/x", study_name="s", trials=1, sampler="random",
                     pruner="none", seed=0, startup=1,
                     objective=types.SimpleNamespace(steps=10, widths=[8], seeds=[0]))  # type: ignore[arg-type]
    with pytest.raises(SystemExit) as exited:  # as a spawned worker runs it
        studies._workers._Reporting(_tune._worker_main, str(tmp_path / "report.json"))(job, 0)
    assert exited.value.code == ExitCode.STORAGE_LOST
    err = capsys.readouterr().err
    assert "lost the connection to db:5432/x before this worker could start" in err and "secret" not in err


@pytest.mark.slow  # two tune processes: ~15 s
def test_a_second_tune_shell_on_a_running_journal_study_draws_its_own_points(tmp_path: Path) -> None:
    """A shell started while another runs the same journal study draws other points: its seed moves on with
    the trials already in the study (tune.seed stays reproducible for a lone run). Two shells started in the
    same instant on one journal study do share a seed (docs/cluster.md); on a database they do not."""
    import time

    import yaml

    from hptransfer.studies import _storage

    rec = {"name": "two-shells", "model": {"name": "mlp"},
           "task": {"name": "classification", "kwargs": {"n_train": 512, "n_val": 256}},
           "train": {"batch_size": 32, "steps": 150}, "widths": {"proxy": 16, "target": 64},
           "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}},
           "tune": {"trials": 10, "sampler": "random", "storage": str(tmp_path / "s.journal")}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(rec))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def shell(i: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "hptransfer", "tune", str(path), "-q", "--out",
                                 str(tmp_path / f"run{i}")], env=env, stderr=subprocess.PIPE, text=True)

    first = shell(0)
    url = "journal://" + str(tmp_path / "s.journal")
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            if _storage.count_trials(_storage.load_study(url, "two-shells"), (TrialState.RUNNING,)):
                break
        except Exception:  # not created yet
            continue
    second = shell(1)
    errs = [p.communicate(timeout=300)[1] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], errs
    done = [t for t in _storage.load_study(url, "two-shells").get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) >= 10 and len({round(t.params["lr"], 12) for t in done}) == len(done)


def test_a_value_error_in_the_users_training_is_reported_not_retried_forever(tmp_path: Path) -> None:
    """The budget loop swallows Optuna's refusal to record a trial another worker failed as stale; a
    ValueError raised by the objective itself must still end the run with the error."""
    import threading

    from hptransfer.tuning import tune

    calls = []

    def train_fn(hp):
        calls.append(hp)
        raise ValueError("my data loader broke")

    result: list[BaseException] = []

    def go() -> None:
        try:
            tune(train_fn, space={"lr": ("log_float", 1e-4, 1.0)}, width=8, trials=3,
                 storage=str(tmp_path / "s.journal"), quiet=True)
        except BaseException as exc:  # recorded for the assertion
            result.append(exc)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), f"tune is still retrying after {len(calls)} calls"
    assert result and "my data loader broke" in str(result[0]) and len(calls) == 1
