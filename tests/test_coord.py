"""Coordinate check: μP passes and SP fails on the reference models, the update statistic
catches vanishing updates, reporting (summary, JSON, PNG) and the ``coord-check`` CLI."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hptransfer import CoordCheckResult, coord_check
from hptransfer.cli import main
from hptransfer.errors import CoordCheckError
from hptransfer.models import cnn, gpt, mlp
from hptransfer.parametrization import MuP, ParamInfo, available_parametrizations, register_parametrization
from hptransfer.tasks import get_task

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = {"steps": 2, "seeds": (0, 1)}


@functools.cache
def _charlm():
    # A short context and a small corpus keep the GPT runs to a few seconds.
    return get_task("charlm", block_size=16, n_bytes=200_000)


@functools.cache
def _mlp_result(parametrization: str) -> CoordCheckResult:
    return coord_check(mlp, widths=(32, 64, 128, 256), parametrization=parametrization,
                       task=get_task("classification"), **FAST)


@functools.cache
def _gpt_result(parametrization: str) -> CoordCheckResult:
    task = _charlm()
    return coord_check(functools.partial(gpt, **task.model_kwargs()), widths=(32, 64, 128),
                       parametrization=parametrization, task=task, batch_size=8, **FAST)


# ---- verdicts on the reference models --------------------------------------------------


def test_mlp_mup_passes() -> None:
    res = _mlp_result("mup")
    assert res.passed, res.summary()
    assert res.failing == []
    assert {"input", "hidden.0", "readout", "(model)"} <= set(res.modules)
    # The shared activation module runs twice per forward: each call is its own coordinate.
    assert {"act", "act#2"} <= set(res.modules)


def test_mlp_sp_fails_and_names_the_modules() -> None:
    res = _mlp_result("sp")
    assert not res.passed
    failing = {m for m, *_ in res.failing}
    assert {"hidden.0", "readout"} <= failing
    assert "input" not in failing  # the first layer's Adam update does not depend on width
    _module, step, kind, slope = res.failing[0]
    assert step >= 1 and slope > res.tolerances["grow"] and kind in ("activation", "update")
    assert "hidden.0" in res.summary() and "FAIL" in res.summary()


def test_gpt_mup_passes() -> None:
    res = _gpt_result("mup")
    assert res.passed, res.summary()
    assert "lm_head" in res.fixed_size and "blocks.0.attn.q_proj" not in res.fixed_size


def test_gpt_sp_fails_and_names_the_modules() -> None:
    res = _gpt_result("sp")
    assert not res.passed
    failing = {m for m, *_ in res.failing}
    assert {"blocks.0.mlp.proj", "blocks.1.attn.o_proj", "lm_head"} <= failing
    assert "wte" not in failing
    assert "blocks.0.mlp.proj" in res.summary()


def test_slopes_have_one_entry_per_step() -> None:
    res = _mlp_result("mup")
    assert res.steps == [0, 1, 2]
    assert all(len(v) == 3 for v in res.slopes.values())
    assert all(math.isnan(v[0]) for v in res.update_slopes.values())
    n = len(res.widths) * 2 * 3 * len(res.modules)  # widths x seeds x steps x modules
    assert len(res.stats) == n


# ---- a model defined only here ---------------------------------------------------------


class GluMLP(nn.Module):
    """Pre-norm residual GLU MLP with RMSNorm and no biases anywhere."""

    def __init__(self, width: int, d_in: int = 16, n_classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Linear(d_in, width, bias=False)
        self.norm = nn.RMSNorm(width)
        self.gate = nn.Linear(width, 2 * width, bias=False)
        self.up = nn.Linear(width, 2 * width, bias=False)
        self.down = nn.Linear(2 * width, width, bias=False)
        self.norm_out = nn.RMSNorm(width)
        self.head = nn.Linear(width, n_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        z = self.norm(h)
        h = h + self.down(F.silu(self.gate(z)) * self.up(z))
        return self.head(self.norm_out(h))


def _glu_batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(32, 16, generator=gen)
    return x, (x[:, :5].argmax(dim=1))  # a learnable rule: index of the largest of 5 features


def test_user_glu_rmsnorm_model_passes_under_mup_with_batch_fn() -> None:
    res = coord_check(GluMLP, widths=(32, 64, 128, 256), batch_fn=_glu_batches, loss_fn=F.cross_entropy, **FAST)
    assert res.passed, res.summary()
    assert {"gate", "up", "down", "norm_out", "head"} <= set(res.modules)
    sp = coord_check(GluMLP, widths=(32, 64, 128, 256), parametrization="sp", batch_fn=_glu_batches,
                     loss_fn=F.cross_entropy, **FAST)
    assert not sp.passed and "down" in {m for m, *_ in sp.failing}


def test_mup_sgd_passes() -> None:
    res = coord_check(mlp, widths=(32, 64, 128, 256), task="classification", optimizer="sgd", lr=0.1, **FAST)
    assert res.passed, res.summary()


# ---- vanishing updates: caught by the update statistic only ---------------------------

if "test-mup-hidden-lr-too-small" not in available_parametrizations():

    @register_parametrization("test-mup-hidden-lr-too-small")
    class _HiddenLRTooSmall(MuP):
        """μP with the hidden Adam LR divided by the width multiplier once too often."""

        def lr_mult(self, info: ParamInfo, family: str, *, readout_hooked: bool) -> float:
            mult = super().lr_mult(info, family, readout_hooked=readout_hooked)
            return mult / info.fan_in_mult if info.role == "hidden" else mult


def test_vanishing_hidden_update_is_caught() -> None:
    task = get_task("classification", d_in=3 * 8 * 8)

    def images(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = task.batch(step, 32)
        return x.view(-1, 3, 8, 8), y

    res = coord_check(cnn, widths=(16, 32, 64, 128), parametrization="test-mup-hidden-lr-too-small",
                      batch_fn=images, loss_fn=task.loss, **FAST)
    assert not res.passed
    kinds = {(m, k) for m, _, k, s in res.failing if s < 0}
    assert ("conv2", "update") in kinds
    # The plain activation statistic does not see it: conv2's mean |h| does not grow or shrink much.
    assert all(s <= res.tolerances["grow"] for s in res.slopes["conv2"])


# ---- reporting ----------------------------------------------------------------------------


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = _gpt_result("sp").plot(tmp_path / "sub" / "coord.png")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    ok = _mlp_result("mup").plot(tmp_path / "ok.png")
    assert ok.read_bytes()[:8] == PNG_SIGNATURE


def test_to_dict_is_json_serialisable() -> None:
    for res in (_mlp_result("mup"), _mlp_result("sp")):
        d = res.to_dict()
        text = json.dumps(d, allow_nan=False)
        back = json.loads(text)
        assert back["passed"] == res.passed
        assert back["update_slopes"]["readout"][0] is None  # no update at init
        assert len(back["failing"]) == len(res.failing)
        assert back["tolerances"] == res.tolerances


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"widths": (64,)}, "at least two"),
        ({"widths": (64, -1)}, "at least two distinct positive"),
        ({"widths": (32, 64), "steps": 0}, "steps"),
        ({"widths": (32, 64), "seeds": ()}, "seeds"),
        ({"widths": (32, 64), "optimizer": "lion"}, "optimizer"),
        ({"widths": (32, 64), "tol_grow": -1.0}, "tol_grow"),
    ],
)
def test_bad_input_raises_coord_check_error(kwargs: dict, fragment: str) -> None:
    with pytest.raises(CoordCheckError, match=fragment):
        coord_check(mlp, task="classification", **kwargs)


def test_missing_data_source_raises() -> None:
    with pytest.raises(CoordCheckError, match="batch_fn"):
        coord_check(mlp, widths=(32, 64))


# ---- CLI ------------------------------------------------------------------------------------

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


def test_python_dash_m_entry_point_exists() -> None:
    import importlib.util

    assert importlib.util.find_spec("hptransfer.__main__") is not None


def test_cli_on_a_shipped_tuning_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    # The same recipe the tuner reads: model, task, parametrization and optimizer come from it.
    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "mlp_quickstart.yaml")
    assert main(["coord-check", recipe, "--widths", "32,64,128", "--steps", "1", "--seeds", "1"]) == 0
    assert main(["coord-check", recipe, "--widths", "32,64,128", "--steps", "1", "--seeds", "1",
                 "--parametrization", "sp"]) == 1
    assert "FAILED" in capsys.readouterr().out
