"""``hptransfer run``: a tiny end-to-end job, the Python API, a failing check (exit 1) and edge warnings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from _helpers import ROOT, hpt_warns, write_tiny

import hptransfer
from hptransfer import cli


def test_tiny_end_to_end_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = write_tiny(tmp_path)
    out = tmp_path / "run"
    start = time.perf_counter()
    rc = cli.main(["run", str(recipe), "--out", str(out), "--quiet"])
    assert time.perf_counter() - start < 60
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert stdout.startswith("PASS")
    for name in ("study.journal", "best.yaml", "target.yaml", "summary.md", "history.png", "slices.png",
                 "target_curve.png", "target_run.json", "recipe.yaml"):
        assert (out / name).is_file(), name
    summary = (out / "summary.md").read_text()
    assert "**Verdict: PASS**" in summary and "of one target run" in summary and "FLOPs" in summary
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["trials"]["complete"] == 5 and "lr" in best["params"]
    model, _ = hptransfer.load(out / "target.yaml")
    assert model.width == 64
    # The tool's own schemas accept what it wrote (recipe.yaml once `check.workers: auto` failed them).
    import jsonschema

    from hptransfer.recipe import json_schema
    from hptransfer.targets._target_file import target_schema

    for name, schema in (("recipe.yaml", json_schema()), ("target.yaml", target_schema())):
        jsonschema.Draft202012Validator.check_schema(schema)
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load((out / name).read_text())))
        assert not errors, f"{name}: {[e.message for e in errors[:3]]}"
    # Running again resumes: no new trials, same best.
    assert cli.main(["tune", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert "5 complete" in capsys.readouterr().out


def test_python_run_api(tmp_path: Path) -> None:
    from hptransfer.targets._job import run

    res = run(write_tiny(tmp_path), out=tmp_path / "r", overrides=["tune.trials=3", "train.steps=40"], quiet=True)
    assert res.tune.n_complete == 3 and res.check_passed and res.compute_ratio > 0
    assert res.target_loss <= res.proxy_loss * 1.005


def test_run_check_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # A target trained for 2 steps cannot beat the proxy: the check fails with exit code 1, not a crash.
    recipe = write_tiny(tmp_path, transfer={"steps": 2}, tune={"trials": 2, "sampler": "random"})
    with hpt_warns("μP covers width only"):
        rc = cli.main(["run", str(recipe), "--out", str(tmp_path / "run"), "-q", "--set", "train.steps=30"])
    assert rc == 1
    # The horizon is named once, before tuning (the transfer's own note on it goes to target.yaml only).
    err = capsys.readouterr().err
    assert err.count("warning:") == err.count("steps=2") == 1 and "[horizon] the target trains" in err, err
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "**Verdict: FAIL**" in summary and "## Warnings" in summary


def test_best_value_on_the_edge_of_its_range_is_warned() -> None:
    from hptransfer.recipe import load_recipe
    from hptransfer.targets._job import edge_warnings

    rec = load_recipe(ROOT / "recipes" / "mlp_quickstart.yaml")
    low = rec.search["output_mult"].low
    (warning,) = edge_warnings(rec, {"lr": 1e-2, "output_mult": low * 1.1})
    assert "output_mult" in warning and "lower edge" in warning and "search.output_mult" in warning
    assert edge_warnings(rec, {"lr": 1e-2, "output_mult": 1.0}) == []


def test_a_study_that_learned_nothing_is_inconclusive_not_pass(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # LRs of 1e-7..1e-6 for 20 steps leave the proxy at the untrained loss ln(classes): nothing to transfer.
    recipe = write_tiny(tmp_path, search={"lr": {"type": "log_float", "low": 1e-7, "high": 1e-6}},
                        tune={"trials": 2, "sampler": "random"})
    rc = cli.main(["run", str(recipe), "--out", str(tmp_path / "run"), "-q", "--set", "train.steps=20"])
    out = capsys.readouterr().out
    assert rc == 1 and out.startswith("INCONCLUSIVE") and "untrained predictor" in out
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "**Verdict: INCONCLUSIVE**" in summary and "search.lr" in summary


@pytest.mark.parametrize(("target", "width", "verdict", "says"), [
    (0.80, 256, "pass", "wider is better"),
    (1.002, 256, "inconclusive", "too close to tell"),  # worse by 0.2%: before, "PASS ... wider is better"
    (0.998, 256, "inconclusive", "too close to tell"),
    (0.90, 64, "inconclusive", "not wider than the proxy"),  # before: "PASS ... wider is better"
    (1.10, 256, "fail", "worse than the proxy"),
])
def test_the_runs_verdict_says_wider_is_better_only_when_it_was(target, width, verdict, says) -> None:
    from types import SimpleNamespace

    from hptransfer.targets._job import _verdict

    res = SimpleNamespace(diverged=False, val_loss=target, reason="")
    got, text = _verdict(res, proxy_loss=1.0, untrained=2.0, width=width, proxy_width=64)
    assert got == verdict and says in text
    assert ("wider is better as" in text) == (verdict == "pass")


def test_a_width_listed_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = write_tiny(tmp_path, widths={"proxy": [16, 16], "target": 32})
    assert cli.main(["run", str(recipe), "-q"]) == 2
    assert "widths.proxy: lists 16 more than once" in capsys.readouterr().err
