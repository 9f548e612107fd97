"""``hptransfer coord-check``: outputs, exit codes 0/1/2, recipe options and their precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _helpers import PNG_SIGNATURE, ROOT

from hptransfer.cli import main

CLI_FAST = ["--widths", "32,64,128", "--steps", "1", "--seeds", "1"]


def test_cli_passes_with_exit_0_and_writes_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["coord-check", *CLI_FAST, "--json", str(out_json), "--plot", str(out_png)]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["passed"] is True
    assert out_png.read_bytes()[:8] == PNG_SIGNATURE


def test_cli_sp_fails_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coord-check", *CLI_FAST, "--parametrization", "sp"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "readout" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--model", "resnet"], "--model"),
        (["--widths", "64,abc"], "--widths"),
        (["--widths", "64"], "--widths"),
        (["--model", "gpt", "--widths", "30,60"], "--widths"),
        (["--model", "gpt", "--task", "classification"], "--task"),
        (["--lr", "fast"], "--lr"),
        (["--no-such-option"], "unrecognized"),
        (["recipes/gpt_charlm.yaml", "--depths", "2,4,8"], "--depths"),  # a recipe without `depths:`
    ],
)
def test_cli_bad_input_exit_2_one_line(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coord-check", *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_recipe_options_and_precedence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "coord.yaml"
    recipe.write_text("model: mlp\nwidths: [32, 64, 128]\nsteps: 1\nseeds: [0]\nparametrization: sp\n")
    assert main(["coord-check", str(recipe)]) == 1  # the recipe asks for SP
    assert main(["coord-check", str(recipe), "--parametrization", "mup"]) == 0  # the command line wins
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: mlp\nwidth: [32, 64]\n")
    assert main(["coord-check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "width" in err and "unknown option" in err and "Traceback" not in err
    assert main(["coord-check", str(tmp_path / "missing.yaml")]) == 2


def test_cli_on_a_shipped_tuning_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    # The same recipe the tuner reads: model, task, parametrization and optimizer come from it.
    recipe = str(ROOT / "recipes" / "mlp_quickstart.yaml")
    assert main(["coord-check", recipe, "--widths", "32,64,128", "--steps", "1", "--seeds", "1"]) == 0
    assert main(["coord-check", recipe, "--widths", "32,64,128", "--steps", "1", "--seeds", "1",
                 "--parametrization", "sp"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_cli_set_overrides_fields_of_a_tuning_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    recipe = str(ROOT / "recipes" / "mlp_quickstart.yaml")
    fast = ["--widths", "32,64,128", "--steps", "1", "--seeds", "1"]
    assert main(["coord-check", recipe, *fast, "--set", "optimizer.name=sgd", "--set", "optimizer.lr=0.05"]) == 0
    assert "(mup, sgd lr=0.05," in capsys.readouterr().out
    assert main(["coord-check", recipe, *fast, "--set", "optimizer.nme=sgd"]) == 2
    assert "optimizer.nme: unknown field. Did you mean 'name'?" in capsys.readouterr().err
    assert main(["coord-check", "--model", "mlp", "--set", "optimizer.name=sgd"]) == 2  # no tuning recipe to set
    assert "--set overrides fields of a tuning recipe" in capsys.readouterr().err


def test_cli_set_on_a_broken_recipe_file_names_the_broken_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # It used to say "--set overrides fields of a tuning recipe", hiding that the file is not valid YAML.
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {name: mlp\n")
    assert main(["coord-check", str(bad), "--set", "train.steps=3"]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "--set overrides" not in err


def test_a_flat_options_file_sets_steps_seeds_and_outputs(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    options = tmp_path / "coord.yaml"
    options.write_text(f"model: mlp\nwidths: [16, 32, 64]\nsteps: 1\nseeds: [3]\njson: {out}\n")
    assert main(["coord-check", str(options)]) == 0
    data = json.loads(out.read_text())
    assert data["steps"] == [0, 1] and {r["seed"] for r in data["stats"]} == {3}
