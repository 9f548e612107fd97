"""One implementation behind both doors: each verb through Python and through a recipe, same problem.

For tune, transfer, the transfer check and the coordinate check the Python call writes a recipe
and runs the recipe path; these tests run the same problem through the Python call and through a
YAML recipe (or the command line) and ask for the same spec, the same defaults and the same result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import hptransfer as hpt
from hptransfer.cli import main
from hptransfer.errors import RecipeError, TransferError

USER_CODE = '''
import math
from hptransfer.models import mlp

def build(width):
    return mlp(width, depth=2)

def train(hp, *, width, seed, report):
    # a bowl in log2(lr) at 2**-7, a fixed-HP term, some seed noise
    loss = 1.0 + 0.05 * (math.log2(hp["lr"]) + 7.0) ** 2 + hp["wd"] + 0.001 * seed
    for step in range(6):
        report(step, loss + 1.0 / (step + 1))
    return loss
'''


@pytest.fixture()
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    (tmp_path / "doors_user.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import importlib

    return importlib.import_module("doors_user")


def _recipe_file(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


SPACE = {"lr": ("log_float", 2.0 ** -12, 2.0 ** -2)}
SEARCH = {"lr": {"type": "log_float", "low": 2.0 ** -12, "high": 2.0 ** -2}}


def test_tune_through_both_doors_is_one_study_with_one_result(user_module, tmp_path: Path) -> None:
    py = hpt.tune(user_module.train, space=SPACE, width=16, steps=6, batch_size=8, seeds=[0, 1], trials=5,
                  sampler="random", fixed={"wd": 0.1}, study_name="doors", out=tmp_path / "py", quiet=True)
    path = _recipe_file(tmp_path, "doors", {
        "name": "doors", "task": {"train_fn": "doors_user:train"}, "train": {"steps": 6, "batch_size": 8,
                                                                            "seeds": [0, 1]},
        "widths": {"proxy": 16}, "search": SEARCH, "fixed": {"wd": 0.1},
        "tune": {"trials": 5, "sampler": "random"}, "out": str(tmp_path / "yaml")})
    rec = hpt.tune(path, quiet=True)
    # the same recipe (so the same study key and the same defaults), the same trials, the same answer
    assert py.recipe.hash == rec.recipe.hash
    assert {k: v for k, v in py.recipe.to_dict().items() if k not in ("out", "description")} == \
        {k: v for k, v in rec.recipe.to_dict().items() if k not in ("out", "description")}
    assert py.best_values == rec.best_values and py.best_value == rec.best_value
    assert set(py.best_values) == {"lr", "wd"}  # what the function was handed: nothing invented beside it
    assert py.best_values["wd"] == 0.1


def test_transfer_through_both_doors_writes_the_same_target(user_module, tmp_path: Path) -> None:
    res = hpt.tune(user_module.train, space=SPACE, width=16, steps=6, batch_size=8, trials=4, sampler="random",
                   fixed={"wd": 0.1}, study_name="doors", out=tmp_path / "run", quiet=True)
    (py,) = hpt.transfer(res, target_widths=64, factory=user_module.build, base_width=16, steps=24,
                         law="deepseek", out=tmp_path / "py.yaml", quiet=True)
    path = _recipe_file(tmp_path, "doors", {
        "name": "doors", "model": {"factory": "doors_user:build"}, "task": {"train_fn": "doors_user:train"},
        "parametrization": {"base_width": 16}, "train": {"steps": 6, "batch_size": 8},
        "widths": {"proxy": 16, "target": 64}, "search": SEARCH, "fixed": {"wd": 0.1},
        "transfer": {"steps": 24, "law": "deepseek"}, "out": str(tmp_path / "run")})
    assert main(["transfer", str(path), "-q"]) == 0  # the recipe's run folder holds the study
    cli = yaml.safe_load((tmp_path / "run" / "target.yaml").read_text())
    mine = yaml.safe_load(py.path.read_text())
    assert mine["spec"] == cli["spec"] and mine["groups"] == cli["groups"]
    assert mine["base_shapes"] == cli["base_shapes"]
    # (proxy_values differ by what each study handed its function: the recipe that names a model hands over
    # its parametrization's multipliers too; the Python study, which has no model, does not)
    assert {k: v for k, v in mine["transfer"].items() if k != "proxy_values"} == \
        {k: v for k, v in cli["transfer"].items() if k != "proxy_values"}
    # the law was applied, and only what the study's function was handed (plus the model to build) is recorded
    assert mine["spec"]["extra"]["lr"] == pytest.approx(res.best_values["lr"] * 4 ** -0.125)
    assert mine["transfer"]["law"] == "deepseek" and mine["spec"]["optimizer"] is None
    import jsonschema

    from hptransfer.targets._target_file import target_schema

    jsonschema.validate(mine, target_schema(), cls=jsonschema.Draft202012Validator)  # sections left null are valid


def test_check_through_both_doors_sweeps_the_same_runs(tmp_path: Path) -> None:
    grid = [1e-3, 4e-3, 1.6e-2]
    py = hpt.check_transfer("mlp", "classification", widths=[16, 32, 64], grid={"lr": grid}, seeds=[0, 1],
                            steps=5, batch_size=16, n_boot=50, expect={"mup": "any"})
    path = _recipe_file(tmp_path, "hptransfer", {
        "name": "hptransfer", "model": {"name": "mlp"}, "task": {"name": "classification"},
        "train": {"steps": 5, "batch_size": 16}, "widths": {"proxy": 16, "target": 64},
        "check": {"widths": [16, 32, 64], "seeds": [0, 1], "lr": {"values": grid}, "bootstrap": 50,
                  "expect": {"mup": "any"}}})
    rec = hpt.check_recipe(hpt.load_recipe(path), storage="inmemory")
    (a,), (b,) = py.results, rec.results
    assert np.array_equal(a.losses, b.losses)  # every run the same: one set of defaults (AdamW, cosine)
    assert a.drift.slope == b.drift.slope and a.verdict == b.verdict
    assert py.config["optimizer"] == rec.config["optimizer"] == "adamw"
    assert list(tmp_path.iterdir()) == [path]  # in memory by default: the Python door wrote no study file


def test_coord_check_through_both_doors_measures_the_same_slopes(tmp_path: Path) -> None:
    from hptransfer.models import mlp

    py = hpt.coord_check(mlp, widths=[16, 32, 64], task="classification", steps=2, seeds=(0, 1))
    out = tmp_path / "cli.json"
    code = main(["coord-check", "--model", "mlp", "--widths", "16,32,64", "--steps", "2", "--seeds", "2",
                 "--json", str(out)])
    cli = json.loads(out.read_text())
    assert code == (0 if py.passed else 1) and cli["passed"] is py.passed
    mine = py.to_dict()
    assert mine["slopes"] == cli["slopes"] and (mine["optimizer"], mine["lr"]) == (cli["optimizer"], cli["lr"])


def test_fixed_values_are_trained_and_reported_and_a_searched_one_is_refused(tmp_path: Path) -> None:
    """It used to train every trial at the fixed LR and report a sampled one no trial used."""
    from _helpers import write_tiny

    from hptransfer.training import _run

    recipe = yaml.safe_load(write_tiny(tmp_path, search={"output_mult": {"type": "log_float", "low": 0.5,
                                                                         "high": 2.0}},
                                       tune={"trials": 2, "sampler": "random"}).read_text())
    recipe["train"]["steps"] = 3
    seen: list[float] = []
    real = _run.train_spec

    def spy(spec, **kw):
        seen.append(spec.optimizer.lr)
        return real(spec, **kw)

    import hptransfer.tuning._objective as objective

    objective.train_spec, before = spy, objective.train_spec
    try:
        res = hpt.tune(recipe, fixed={"lr": 0.02}, out=tmp_path / "run", quiet=True)
    finally:
        objective.train_spec = before
    assert seen == [0.02, 0.02] and res.best_values["lr"] == 0.02
    recipe["search"]["lr"] = {"type": "log_float", "low": 1e-3, "high": 1e-1}
    with pytest.raises(RecipeError, match=r"fixed.lr: 'lr' is also searched"):
        hpt.tune(recipe, fixed={"lr": 0.02}, out=tmp_path / "run2", quiet=True)


def test_a_law_from_python_is_applied_or_refused(user_module, tmp_path: Path) -> None:
    """It used to record `law: step_law` with its citation and leave the LR as it was."""
    unknown_batch = hpt.tune(user_module.train, space=SPACE, width=16, steps=6, trials=3, sampler="random",
                             fixed={"wd": 0.0}, study_name="nobatch", out=tmp_path / "a", quiet=True)
    with pytest.raises(TransferError, match="needs train.batch_size .not known"):
        hpt.transfer(unknown_batch, target_widths=64, steps=600, batch_size=64, law="step_law", quiet=True)
    known = hpt.tune(user_module.train, space=SPACE, width=16, steps=6, batch_size=8, trials=3, sampler="random",
                     fixed={"wd": 0.0}, study_name="batch", out=tmp_path / "b", quiet=True)
    (t,) = hpt.transfer(known, target_widths=64, steps=600, batch_size=64, law="step_law", quiet=True)
    ratio = (600 * 64) / (6 * 8)
    assert t.values["lr"] == pytest.approx(known.best_values["lr"] * ratio ** 0.307)
    assert t.config["transfer"]["law"] == "step_law" and math.isfinite(t.values["lr"])
    (same,) = hpt.transfer(known, target_widths=64, law="step_law", quiet=True)  # nothing changed: nothing applied
    assert same.config["transfer"]["law"] == "none" and same.values["lr"] == known.best_values["lr"]


def test_a_rerun_of_a_python_study_with_other_settings_is_refused(user_module, tmp_path: Path) -> None:
    kw = dict(space=SPACE, width=16, trials=2, sampler="random", fixed={"wd": 0.0}, out=tmp_path / "run",
              quiet=True)
    first = hpt.tune(user_module.train, steps=6, **kw)
    assert first.study_name == "doors_user.train" and first.recipe.run_dir == tmp_path / "run"
    with pytest.raises(hpt.TuneError, match=r"train.steps: 6 -> 12\. Fix: start a new study"):
        hpt.tune(user_module.train, steps=12, **kw)


def test_a_fixed_value_goes_into_a_section_transfer_writes(user_module, tmp_path: Path) -> None:
    """The study's fixed weight decay reaches the target's optimizer once transfer names one."""
    res = hpt.tune(user_module.train, space=SPACE, width=16, steps=6, trials=2, sampler="random",
                   fixed={"wd": 0.0, "weight_decay": 0.1}, study_name="wd", out=tmp_path / "run", quiet=True)
    assert res.best_values["weight_decay"] == 0.1 and res.recipe.fixed["weight_decay"] == 0.1
    (t,) = hpt.transfer(res, target_widths=64, factory=user_module.build, base_width=16, optimizer="adamw",
                        quiet=True)
    assert t.spec.optimizer is not None and t.spec.optimizer.weight_decay == 0.1 and t.spec.optimizer.lr == \
        res.best_values["lr"]
    assert "weight_decay" not in t.spec.extra


def test_the_python_doors_take_numpy_values_and_name_a_study_freely(tmp_path: Path) -> None:
    from hptransfer.check._recipe import check_transfer_recipe
    from hptransfer.recipe._spec import plain

    rec = check_transfer_recipe(
        "mlp", "classification", widths=np.array([16, 32, 64]), grid={"lr": np.array([1e-3, 1e-2, 1e-1])},
        seeds=np.arange(2), parametrizations=["mup"], steps=np.int64(5), batch_size=8, base_width=None,
        optimizer=None, schedule=None, fixed=None, tolerances=None, expect=None, study_prefix="my check/v2",
        workers=1, n_boot=None, parametrize_options=None, optimizer_options={"eps": np.float32(1e-8)},
        strategy="grid", prune_margins=None, depths=None)
    assert rec.check.seeds == (0, 1) and rec.train.steps == 5 and rec.name == "my_check_v2"
    assert rec.check.prune is False  # prune_margins=None: never stop a run early, as before
    assert plain(np.int64(4)) == 4 and isinstance(plain(np.float32(0.5)), float)


def test_a_non_lr_sweep_without_a_fixed_lr_is_refused() -> None:
    with pytest.raises(hpt.CheckError, match=r"needs the learning rate those sweeps train at"):
        hpt.check_transfer("mlp", "classification", widths=[16, 32, 64], seeds=[0, 1], steps=2, batch_size=8,
                           grid={"lr": [1e-3, 1e-2, 1e-1], "output_mult": [0.5, 1.0, 2.0]})


def test_the_report_of_a_check_with_an_optimizer_class_is_json() -> None:
    import torch

    rep = hpt.check_transfer("mlp", "classification", widths=[16, 32, 64], seeds=[0, 1], steps=2, batch_size=8,
                             grid={"lr": [1e-3, 1e-2, 1e-1]}, optimizer=torch.optim.Adam, n_boot=50,
                             expect={"mup": "any"})
    assert json.loads(rep.to_json())["config"]["optimizer"] == "Adam"
