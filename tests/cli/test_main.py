"""The command line's entry points: ``python -m hptransfer`` and the top-level options."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from _helpers import ROOT

import hptransfer
import hptransfer.cli


def test_python_dash_m_hptransfer_prints_the_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "hptransfer", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"hptransfer {hptransfer.__version__}"


# ---- the bad-input table: every case exits with its documented code, one message, no traceback -------------

_BASE = {
    "name": "bad", "model": {"name": "mlp"},
    "task": {"name": "classification", "kwargs": {"n_train": 256, "n_val": 128}},
    "train": {"batch_size": 8, "steps": 3},
    "widths": {"proxy": 16, "target": 32},
    "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}},
    "tune": {"trials": 2, "sampler": "random"},
}
_DROP = object()
_BASE_TEXT = """name: bad
model: {name: mlp}
task: {name: classification, kwargs: {n_train: 256, n_val: 128}}
train: {batch_size: 8, steps: 3}
widths: {proxy: 16, target: 32}
search: {lr: {type: log_float, low: 0.001, high: 0.1}}
"""

#: (case id, {dotted field: value or _DROP}, text the error must contain: the field or module named)
RECIPES: list[tuple[str, dict, str]] = [
    ("steps-1e30", {"train.steps": 1e30}, "train.steps"),
    ("steps-20-digits", {"train.steps": 10**20}, "train.steps"),
    ("steps-zero", {"train.steps": 0}, "train.steps"),
    ("steps-negative", {"train.steps": -5}, "train.steps"),
    ("steps-word", {"train.steps": "ten"}, "train.steps"),
    ("steps-fraction", {"train.steps": 2.5}, "train.steps"),
    ("steps-bool", {"train.steps": True}, "train.steps"),
    ("steps-null", {"train.steps": None}, "train.steps"),
    ("steps-missing", {"train.steps": _DROP}, "train.steps"),
    ("batch-zero", {"train.batch_size": 0}, "train.batch_size"),
    ("batch-huge", {"train.batch_size": 10**9}, "train.batch_size"),
    ("seeds-empty", {"train.seeds": []}, "train.seeds"),
    ("seeds-negative", {"train.seeds": [-1]}, "train.seeds"),
    ("seeds-huge", {"train.seeds": 2**40}, "train.seeds"),
    ("divergence-factor-1", {"train.divergence_factor": 1.0}, "train.divergence_factor"),
    ("divergence-factor-nan", {"train.divergence_factor": float("nan")}, "train.divergence_factor"),
    ("eval-every-negative", {"train.eval_every": -1}, "train.eval_every"),
    ("proxy-zero", {"widths.proxy": 0}, "widths.proxy"),
    ("proxy-huge", {"widths.proxy": 10**7}, "widths.proxy"),
    ("proxy-word", {"widths.proxy": "abc"}, "widths.proxy"),
    ("target-empty", {"widths.target": []}, "widths.target"),
    ("target-huge", {"widths.target": 2**30}, "widths.target"),
    ("proxy-above-target", {"widths.proxy": 64, "widths.target": 16}, "widths"),
    ("trials-zero", {"tune.trials": 0}, "tune.trials"),
    ("trials-huge", {"tune.trials": 10**9}, "tune.trials"),
    ("sampler-typo", {"tune.sampler": "gpp"}, "tune.sampler"),
    ("pruner-unknown", {"tune.pruner": "early"}, "tune.pruner"),
    ("workers-zero", {"tune.workers": 0}, "tune.workers"),
    ("workers-huge", {"tune.workers": 100_000}, "tune.workers"),
    ("tune-seed-negative", {"tune.seed": -1}, "tune.seed"),
    ("startup-zero", {"tune.startup_trials": 0}, "tune.startup_trials"),
    ("storage-scheme", {"tune.storage": "ftp://host/x"}, "tune.storage"),
    ("storage-folder", {"tune.storage": "{tmp}"}, "tune.storage"),
    ("storage-user-file", {"tune.storage": "{tmp}/notes.txt"}, "notes.txt line 1"),
    ("report-every-negative", {"tune.report_every": -2}, "tune.report_every"),
    ("model-missing", {"model": _DROP}, "model"),
    ("model-name-unknown", {"model.name": "resnet"}, "model.name"),
    ("factory-no-colon", {"model": {"factory": "nocolon"}}, "model.factory"),
    ("factory-no-module", {"model": {"factory": "no_such_module_xyz:f"}}, "model.factory"),
    ("factory-no-attribute", {"model": {"factory": "_bad_models:missing"}}, "model.factory"),
    ("factory-not-callable", {"model": {"factory": "_bad_models:NOT_CALLABLE"}}, "model.factory"),
    ("model-kwargs-list", {"model.kwargs": [1, 2]}, "model.kwargs"),
    ("model-kwargs-bad-depth", {"model.kwargs": {"depth": 0}}, "depth"),
    ("model-kwargs-unknown", {"model.kwargs": {"dept": 2}}, "dept"),
    ("width-arg-empty", {"model.width_arg": ""}, "model.width_arg"),
    ("task-name-unknown", {"task.name": "imagenet"}, "task.name"),
    ("task-missing", {"task": _DROP}, "task"),
    ("task-classes-zero", {"task.kwargs": {"n_classes": 0}}, "n_classes"),
    ("task-kwarg-unknown", {"task.kwargs": {"bogus": 1}}, "bogus"),
    ("train-fn-bad-path", {"task": {"train_fn": "x:y"}}, "task.train_fn"),
    ("optimizer-unknown", {"optimizer.name": "lamb"}, "optimizer.name"),
    ("lr-zero", {"optimizer.lr": 0}, "optimizer.lr"),
    ("beta2-above-1", {"optimizer.beta2": 1.5}, "optimizer.beta2"),
    ("eps-negative", {"optimizer.eps": -1}, "optimizer.eps"),
    ("weight-decay-negative", {"optimizer.weight_decay": -0.1}, "optimizer.weight_decay"),
    ("warmup-above-1", {"schedule.warmup": 2}, "schedule.warmup"),
    ("decay-unknown", {"schedule.decay": "sine"}, "schedule.decay"),
    ("min-lr-frac-above-1", {"schedule.min_lr_frac": 1.5}, "schedule.min_lr_frac"),
    ("parametrization-unknown", {"parametrization.name": "ntk"}, "parametrization.name"),
    ("base-width-zero", {"parametrization.base_width": 0}, "parametrization.base_width"),
    ("output-mult-zero", {"parametrization.output_mult": 0}, "parametrization.output_mult"),
    ("search-type-unknown", {"search.lr.type": "normal"}, "search.lr"),
    ("search-low-above-high", {"search.lr": {"type": "log_float", "low": 0.1, "high": 0.01}}, "search.lr"),
    ("search-log-low-zero", {"search.lr.low": 0}, "search.lr"),
    ("search-unknown-hp", {"search.lrr": {"type": "float", "low": 0, "high": 1}}, "search.lrr"),
    ("search-categorical-no-choices", {"search.lr": {"type": "categorical"}}, "search.lr"),
    ("top-level-typo", {"trian": {"steps": 3}}, "trian"),
    ("name-not-string", {"name": 5}, "name"),
    ("transfer-law-unknown", {"transfer.law": "chinchilla"}, "transfer.law"),
    ("transfer-steps-zero", {"transfer.steps": 0}, "transfer.steps"),
    ("check-one-seed", {"check.seeds": [0]}, "check.seeds"),
]

#: Raw YAML text cases (what a dict cannot express).
RAW: list[tuple[str, str, str]] = [
    ("duplicate-key", "name: a\nname: b\n", "duplicate key 'name'"),
    ("yaml-syntax", "name: [unclosed\n", "not valid YAML"),
    ("empty-file", "", "empty"),
    ("steps-5000-digits", _BASE_TEXT.replace("steps: 3", "steps: " + "9" * 5000), "number too long"),
    ("not-a-mapping", "- 1\n- 2\n", "mapping"),
]

#: (factory in tests/_bad_models.py, extra model fields, exit code, text naming the module, field or role)
FACTORIES: list[tuple[str, dict, int, str]] = [
    ("takes_d_model", {}, 2, "width_arg: d_model"),
    ("keyword_only_size", {}, 2, "model.width_arg"),
    ("good", {"kwargs": {"depth": 3}}, 2, "model.kwargs ['depth']"),
    ("returns_none", {}, 2, "the proxy width"),
    ("returns_string", {}, 2, "not an nn.Module"),
    ("raises_inside", {}, 2, "width=16 (the proxy width)"),
    ("heads_must_divide", {}, 2, "head count"),
    ("wrong_class_count", {}, 2, "10 classes"),
    ("forward_returns_dict_without_logits", {}, 2, "returned dict"),
    ("nan_output", {}, 2, "at initialization"),
    ("forward_shape_bug", {}, 2, "_bad_models.py"),
    ("forward_returns_class_ids", {}, 2, "the proxy width"),
    ("ignores_width", {}, 2, "_bad_models:ignores_width at width=16 (the proxy width)"),
    ("no_parameters", {}, 2, "_bad_models:no_parameters at width=16 (the proxy width)"),
    ("forward_returns_tuple", {}, 0, ""),  # handled: the first element is the logits
    ("forward_returns_output_object", {}, 0, ""),  # handled: `.logits`
    ("good", {"width_arg": "size"}, 2, "model.width_arg"),
]


def _set(data: dict, dotted: str, value: object) -> None:
    *head, last = dotted.split(".")
    for part in head:
        data = data.setdefault(part, {})
    if value is _DROP:
        data.pop(last, None)
    else:
        data[last] = value


def _tune(tmp_path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    (tmp_path / "notes.txt").write_text("my own notes\n")
    try:
        code = hptransfer.cli.main(["tune", str(path), "-q", "--out", str(tmp_path / "run")])
    except BaseException as exc:  # anything escaping main would be a traceback for the user
        raise AssertionError(f"{type(exc).__name__} escaped the command line: {exc}") from exc
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(("changes", "named"), [c[1:] for c in RECIPES], ids=[c[0] for c in RECIPES])
def test_bad_recipe_is_one_clear_error(tmp_path, capsys, changes: dict, named: str) -> None:
    import copy

    import yaml

    data = copy.deepcopy(_BASE)
    for dotted, value in changes.items():
        _set(data, dotted, value.replace("{tmp}", str(tmp_path)) if isinstance(value, str) else value)
    code, err = _tune(tmp_path, yaml.safe_dump(data), capsys)
    assert code == 2 and "Traceback" not in err and named in err, err


@pytest.mark.parametrize(("text", "named"), [c[1:] for c in RAW], ids=[c[0] for c in RAW])
def test_bad_yaml_is_one_clear_error(tmp_path, capsys, text: str, named: str) -> None:
    code, err = _tune(tmp_path, text, capsys)
    assert code == 2 and "Traceback" not in err and named in err, err


@pytest.mark.parametrize(("factory", "model", "code", "named"), FACTORIES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(FACTORIES)])
def test_bad_factory_is_one_clear_error(tmp_path, capsys, factory: str, model: dict, code: int, named: str) -> None:
    import copy

    import yaml

    data = copy.deepcopy(_BASE)
    data["model"] = {"factory": f"_bad_models:{factory}", **model}
    got, err = _tune(tmp_path, yaml.safe_dump(data), capsys)
    assert got == code and "Traceback" not in err and named in err, err


def test_the_table_is_as_large_as_promised() -> None:
    assert len(RECIPES) + len(RAW) >= 50 and len(FACTORIES) >= 15


@pytest.mark.parametrize(("argv", "named"), [
    (["coord-check", "--plot", "/nonexistent-hpt/x.png"], "--plot /nonexistent-hpt/x.png"),
    (["coord-check", "--json", "/nonexistent-hpt/deeper/r.json"], "--json"),
])
def test_output_file_in_a_missing_folder_is_refused_and_creates_nothing(capsys, argv: list[str], named: str) -> None:
    from pathlib import Path

    assert hptransfer.cli.main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "does not exist" in err and "Traceback" not in err
    assert not Path("/nonexistent-hpt").exists()


def test_out_naming_a_file_is_one_line(tmp_path, capsys) -> None:
    import yaml

    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_BASE))
    (tmp_path / "afile").write_text("x")
    assert hptransfer.cli.main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "afile"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "afile" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
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


@pytest.mark.parametrize("command", [["run"], ["check"], ["coord-check"], ["train"], ["transfer"]])
def test_a_binary_file_given_as_recipe_or_target_is_named_as_such(tmp_path, capsys, command: list[str]) -> None:
    # It used to read "your code raised UnicodeDecodeError ... (at <frozen codecs>:322)": the frozen
    # standard-library frame was taken for the user's code.
    path = tmp_path / "image.yaml"
    path.write_bytes(bytes([0x89, 0x50, 0xA7, 0xFF, 0x00, 0x13]) * 50)
    out = ["--out", str(tmp_path / "run")] if command[0] in ("run", "train", "transfer") else []
    assert hptransfer.cli.main([*command, str(path), *out]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "your code raised" not in err and "<frozen" not in err
    assert "not a text file" in err or "can't decode" in err


@pytest.mark.parametrize("argv", [
    ["run", "recipes/mlp_quickstart.yaml", "--storage", "postgresql://u:s3cret@h/db?sslpassword=k3y"],  # run lacks it
    ["transfer", "recipes/mlp_quickstart.yaml", "--storage=postgresql://u:s3cret@h/db"],
    ["tune", "recipes/mlp_quickstart.yaml", "--storage", "postgresq://u:s3cret@h/db"],  # a mistyped scheme
])
def test_no_command_line_error_prints_a_password(argv: list[str], tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    code = hptransfer.cli.main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "s3cret" not in err and "k3y" not in err and "u:***@h" in err, err
