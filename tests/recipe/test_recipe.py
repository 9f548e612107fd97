"""Recipes: shipped recipes validate, malformed ones give one clear error each (exit 2, no traceback)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml
from _helpers import ROOT

from hptransfer import cli
from hptransfer.errors import RecipeError
from hptransfer.recipe import Recipe, load_recipe, parse_recipe, reference, register_section
from hptransfer.recipe._load import apply_overrides
from hptransfer.recipe._recipe import _EXTENSIONS
from hptransfer.recipe._spec import spec_field

SHIPPED = sorted((ROOT / "recipes").glob("*.yaml"))

BASE = {
    "name": "tiny",
    "model": {"name": "mlp"},
    "task": {"name": "classification"},
    "train": {"batch_size": 32, "steps": 20},
    "widths": {"proxy": 16, "target": 64},
    "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}},
}


def _with(path: str, value: object) -> dict:
    data = copy.deepcopy(BASE)
    node = data
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()

# (case id, recipe dict, field path the single error must name)
MALFORMED = [
    ("unknown-section", {**BASE, "modle": {}}, "modle"),
    ("missing-model", _with("model", _DELETE), "model"),
    ("unknown-model", _with("model.name", "resnet"), "model.name"),
    ("name-and-factory", _with("model.factory", "hptransfer.models:mlp"), "model"),
    ("factory-not-a-path", _with("model", {"factory": "nocolon"}), "model.factory"),
    ("factory-missing-module", _with("model", {"factory": "no_such_pkg.mod:fn"}), "model.factory"),
    ("unknown-task", _with("task.name", "imagenet"), "task.name"),
    ("bad-task-kwarg", _with("task.kwargs", {"foo": 1}), "task.kwargs"),
    ("batch-zero", _with("train.batch_size", 0), "train.batch_size"),
    ("steps-text", _with("train.steps", "many"), "train.steps"),
    ("steps-missing", _with("train.steps", _DELETE), "train.steps"),
    ("negative-seed", _with("train.seeds", [-1]), "train.seeds[0]"),
    ("proxy-above-target", _with("widths.proxy", 128), "widths"),
    ("empty-target", _with("widths.target", []), "widths.target"),
    ("empty-search", _with("search", {}), "search"),
    ("low-above-high", _with("search.lr", {"type": "log_float", "low": 1.0, "high": 0.1}), "search.lr"),
    ("log-low-zero", _with("search.lr", {"type": "log_float", "low": 0.0, "high": 0.1}), "search.lr.low"),
    ("unknown-dist", _with("search.lr", {"type": "loguniform", "low": 1e-3, "high": 0.1}), "search.lr.type"),
    ("unknown-hp", _with("search.learning_rate", {"type": "float", "low": 0.1, "high": 0.2}), "search.learning_rate"),
    ("warmup-range", _with("search.warmup", {"type": "float", "low": 0.0, "high": 1.5}), "search.warmup"),
    ("categorical-no-choices", _with("search.beta2", {"type": "categorical"}), "search.beta2.choices"),
    ("categorical-with-gp", _with("search.beta2", {"type": "categorical", "choices": [0.95, 0.99]}),
     "tune.sampler"),
    ("unknown-sampler", _with("tune", {"sampler": "cmaes"}), "tune.sampler"),
    ("unknown-pruner", _with("tune", {"pruner": "asha"}), "tune.pruner"),
    ("negative-trials", _with("tune", {"trials": -3}), "tune.trials"),
    ("sqlite-workers", _with("tune", {"storage": "sqlite:///x.db", "workers": 2}), "tune.storage"),
    ("unknown-optimizer", _with("optimizer", {"name": "lion"}), "optimizer.name"),
    ("unknown-field", _with("optimizer", {"learning_rate": 0.1}), "optimizer.learning_rate"),
    ("unknown-decay", _with("schedule", {"decay": "exp"}), "schedule.decay"),
    ("unknown-parametrization", _with("parametrization", {"name": "ntk"}), "parametrization.name"),
    ("unknown-law", _with("transfer", {"law": "chinchilla"}), "transfer.law"),
    ("section-not-mapping", _with("train", [32, 20]), "train"),
    ("bool-not-number", _with("train.steps", True), "train.steps"),
    ("depths-one-missing", _with("depths", {"proxy": 2}), "depths"),
    ("depths-proxy-deeper", _with("depths", {"proxy": 8, "target": 2}), "depths"),
    ("completep-without-depths", _with("parametrization", {"name": "completep"}), "depths"),
    ("base-depth-without-depths", _with("parametrization", {"base_depth": 2}), "parametrization.base_depth"),
    ("depth-also-in-kwargs", {**_with("model", {"name": "gpt", "kwargs": {"n_layer": 2}}),
                              "depths": {"proxy": 2, "target": 4}}, "model.kwargs.n_layer"),
]


def test_base_recipe_is_valid() -> None:
    r = parse_recipe(copy.deepcopy(BASE))
    assert isinstance(r, Recipe)
    assert r.base_width == 16 and r.widths.target == (64,)
    assert r.values({"lr": 0.01})["lr"] == 0.01 and r.values({})["beta2"] == 0.999


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_recipe_validates(path: Path) -> None:
    r = load_recipe(path)
    assert r.search and r.tune.trials >= 1
    assert r.train.batch_size == (r.transfer.batch_size or r.train.batch_size)  # proxy == target by default


def test_at_least_two_shipped_recipes() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"mlp_quickstart", "gpt_charlm"} <= names


@pytest.mark.parametrize("case,data,field", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_recipe_gives_one_error_naming_the_field(
    case: str, data: dict, field: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data)
    assert len(info.value.problems) == 1, info.value.problems
    assert info.value.problems[0][0] == field
    # The CLI prints it as one error, exit code 2, no traceback.
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli.main(["tune", str(path), "--quiet", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing ran


def test_all_problems_reported_at_once() -> None:
    data = _with("train.steps", 0)
    data["tune"] = {"sampler": "nope", "trials": 0}
    with pytest.raises(RecipeError) as info:
        parse_recipe(data)
    assert {p for p, _ in info.value.problems} == {"train.steps", "tune.sampler", "tune.trials"}


def test_yaml_syntax_error_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: mlp\n   task: [\n")
    with pytest.raises(RecipeError, match="line"):
        load_recipe(bad)
    assert cli.main(["run", str(bad), "-q"]) == 2
    assert cli.main(["run", str(tmp_path / "missing.yaml"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot read" in err


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(evil)


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(BASE))
    r = load_recipe(path, ["train.steps=7", "tune.sampler=tpe", "search.lr.high=0.5"])
    assert r.train.steps == 7 and r.tune.sampler == "tpe" and r.search["lr"].high == 0.5
    with pytest.raises(RecipeError, match="section.field=value"):
        apply_overrides(BASE, ["nonsense"])


def test_hash_ignores_budget_but_not_objective() -> None:
    a = parse_recipe(copy.deepcopy(BASE))
    b = parse_recipe(_with("tune", {"trials": 99, "workers": 3}))
    c = parse_recipe(_with("train.steps", 21))
    assert a.hash == b.hash != c.hash


def test_register_section_hook() -> None:
    @dataclasses.dataclass
    class CheckSpec:
        widths: tuple = spec_field((16, 32), kind="ints", minimum=1, doc="Widths to sweep.")
        seeds: int = spec_field(2, kind="int", minimum=1, doc="Seeds per point.")

    register_section("check_test", CheckSpec, doc="test section")
    try:
        r = parse_recipe({**BASE, "check_test": {"widths": [16, 32, 64]}})
        assert r.sections["check_test"].widths == (16, 32, 64)
        with pytest.raises(RecipeError) as info:
            parse_recipe({**BASE, "check_test": {"seeds": 0}})
        assert info.value.problems[0][0] == "check_test.seeds"
        assert "check_test" in reference()
    finally:
        _EXTENSIONS.pop("check_test", None)


def test_reference_doc_is_generated_and_current() -> None:
    text = reference()
    for key in ("`train.steps`", "`tune.sampler`", "`search.<hp>.type`", "`widths.proxy`"):
        assert key in text
    doc = ROOT / "docs" / "recipe_reference.md"
    assert doc.read_text().strip() == text.strip(), "regenerate: hptransfer schema --reference > " + str(doc)


def test_json_schema_accepts_shipped_recipes_and_rejects_bad_ones(capsys: pytest.CaptureFixture) -> None:
    """`hptransfer schema` is the JSON Schema editors use; it must agree with the parser."""
    import json

    import jsonschema

    assert cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in SHIPPED:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path.name}: {[e.message for e in errors]}"
    for field, value in (("optimizer.name", "adamx"), ("train.steps", 0), ("tune.sampler", "bayes"),
                         ("widths.proxy", "sixteen"), ("model.colour", "red")):
        bad = _with(field, value)
        with pytest.raises(RecipeError):
            parse_recipe(bad)
        assert list(validator.iter_errors(bad)), f"schema accepts {field}={value!r} but the parser does not"


def test_a_train_fn_study_of_an_older_version_resumes() -> None:
    """Older studies stored the optimizer and schedule defaults a train_fn recipe now leaves to the function."""
    from hptransfer.recipe import parse_recipe
    from hptransfer.recipe._recipe import objective_changes

    data = {"name": "own", "task": {"train_fn": "math:sqrt"}, "train": {"steps": 5}, "widths": {"proxy": 8},
            "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}}}
    rec = parse_recipe(data)
    assert rec.user_decides == ("parametrization", "optimizer", "schedule")
    stored = {**rec.to_dict(), "optimizer": {"name": "adamw", "lr": 0.001}, "schedule": {"decay": "cosine"}}
    assert objective_changes(stored, rec) == []
    assert objective_changes({**stored, "train": {**stored["train"], "steps": 9}}, rec) == ["train.steps: 9 -> 5"]
