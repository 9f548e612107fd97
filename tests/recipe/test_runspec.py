"""The run spec: Recipe.at, values in and out of sections, replace, and the schema round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hptransfer.errors import RecipeError
from hptransfer.recipe import TUNABLE, RunSpec, parse_recipe
from hptransfer.recipe._runspec import spec_from_dict, spec_to_dict
from hptransfer.training import build, train_spec

BASE = {
    "name": "tiny",
    "model": {"name": "mlp", "kwargs": {"depth": 3}},
    "task": {"name": "classification", "kwargs": {"n_train": 256, "n_val": 128}},
    "train": {"batch_size": 16, "steps": 5, "seeds": [3, 4]},
    "widths": {"proxy": 16, "target": 64},
    "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}},
    "optimizer": {"lr": 0.002, "beta1": 0.8},
}


def test_at_puts_each_value_in_its_section_and_values_reads_it_back() -> None:
    rec = parse_recipe(BASE)
    spec = rec.at(64, {"lr": 0.01, "output_mult": 2.0, "warmup": 0.1, "my_dropout": 0.3})
    assert spec.width == 64 and spec.seed == 3 and spec.base_width == 16
    assert spec.optimizer.lr == 0.01 and spec.optimizer.beta1 == 0.8  # not searched: the recipe's value
    assert spec.parametrization.output_mult == 2.0 and spec.schedule.warmup == 0.1
    assert spec.extra == {"my_dropout": 0.3}  # a name only the user's train_fn knows
    values = spec.values()
    assert set(TUNABLE) <= set(values) and values["lr"] == 0.01 and values["my_dropout"] == 0.3
    # Overrides of the run's shape and parametrization, as the check and the target run use them.
    other = rec.at(32, seed=7, parametrization="sp", steps=9, batch_size=4)
    assert (other.seed, other.parametrization.name, other.train.steps, other.train.batch_size) == (7, "sp", 9, 4)


def test_replace_reaches_into_sections() -> None:
    spec = parse_recipe(BASE).at(64)
    new = spec.replace(width=128, **{"optimizer.name": "sgd", "train.steps": 2})
    assert (new.width, new.optimizer.name, new.train.steps) == (128, "sgd", 2)
    assert spec.optimizer.name == "adamw"  # frozen: the original is untouched


def test_schema_round_trip_and_errors_name_the_field() -> None:
    spec = parse_recipe(BASE).at(64, {"lr": 0.01, "my_dropout": 0.3})
    assert spec_from_dict(spec_to_dict(spec)) == spec
    data = spec_to_dict(spec)
    data["optimizer"]["name"] = "adamx"
    data["train"]["steps"] = 0
    with pytest.raises(RecipeError) as info:
        spec_from_dict(data)
    assert {p for p, _ in info.value.problems} == {"optimizer.name", "train.steps"}


def test_build_and_run_follow_the_spec() -> None:
    spec = parse_recipe(BASE).at(32, {"lr": 0.01})
    b = build(spec)
    assert b.model.width == 32 and isinstance(b.optimizer, torch.optim.AdamW)
    assert b.optimizer.defaults["betas"] == (0.8, 0.999)
    # μP Adam: the hidden matrix gets lr / (32 / 16).
    lrs = {n: g["lr"] for g in b.optimizer.param_groups for n in g["param_names"]}
    assert lrs["hidden.0.weight"] == pytest.approx(0.005) and lrs["input.weight"] == pytest.approx(0.01)
    res = train_spec(spec)
    assert res.steps == 5 and not res.diverged and res.val_loss < float("inf")
    again = train_spec(spec)
    assert again.losses == res.losses  # the seed in the spec makes the run repeatable


def test_adding_a_tunable_hp_is_one_table_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/architecture.md, "Adding a hyperparameter": an existing section field becomes tunable
    with one TUNABLE entry; search validation, Recipe.at, RunSpec.values and the build follow."""
    data = {**BASE, "search": {**BASE["search"], "grad_clip": {"type": "log_float", "low": 0.01, "high": 1.0}}}
    with pytest.raises(RecipeError, match="built-in training does not use 'grad_clip'"):
        parse_recipe(data)
    monkeypatch.setitem(TUNABLE, "grad_clip", ("optimizer", "grad_clip", 0.0, float("inf"), True))
    rec = parse_recipe(data)
    spec = rec.at(32, {"lr": 0.01, "grad_clip": 0.05})
    assert spec.optimizer.grad_clip == 0.05 and spec.values()["grad_clip"] == 0.05
    assert spec_from_dict(spec_to_dict(spec)) == spec
    clipped, free = train_spec(spec), train_spec(dataclasses.replace(spec, optimizer=dataclasses.replace(spec.optimizer,
                                                                                         grad_clip=None)))
    assert clipped.losses[0] == free.losses[0] and clipped.losses[-1] != free.losses[-1]


def test_a_spec_without_a_model_needs_a_factory() -> None:
    from hptransfer.errors import FactoryError
    from hptransfer.recipe import ModelSpec, OptimizerSpec, ParametrizationSpec, RunTrainSpec, ScheduleSpec, TaskSpec

    spec = RunSpec(width=32, model=ModelSpec(), task=TaskSpec(), parametrization=ParametrizationSpec(base_width=16),
                   optimizer=OptimizerSpec(), schedule=ScheduleSpec(), train=RunTrainSpec())
    with pytest.raises(FactoryError, match="factory="):
        build(spec)
    from hptransfer.models import mlp

    assert build(spec, factory=mlp).model.width == 32


GPT_DEPTH = {
    "name": "deep", "model": {"name": "gpt", "kwargs": {"n_head": 2}},
    "task": {"name": "charlm", "kwargs": {"block_size": 8}},
    "parametrization": {"name": "completep"}, "train": {"batch_size": 4, "steps": 2},
    "widths": {"proxy": 16, "target": 32}, "depths": {"proxy": 2, "target": 4},
    "search": {"lr": {"type": "log_float", "low": 1e-3, "high": 1e-1}},
}


def test_depth_is_a_field_of_the_spec_and_build_uses_it() -> None:
    r = parse_recipe(GPT_DEPTH)
    proxy, target = r.at(16), r.at(32, depth=r.depths.target)
    assert (proxy.depth, proxy.base_depth, target.depth, target.base_depth) == (2, 2, 4, 2)
    assert spec_from_dict(spec_to_dict(target)) == target
    from hptransfer import scaling_table

    table = scaling_table(build(target, device="meta").model)  # the meta build traces the blocks too
    assert len(table.depth["branches"]) == 8 and table.depth["alpha"] == 1.0
    assert {ms.multiplier for ms in table.module_scalings if ms.kind == "output"} == {0.5}
    groups = build(target).optimizer.param_groups  # CompleteP's eps x 1/(m_d m_L) is on by default
    eps = {n: g["eps"] for g in groups for n in g["param_names"]}
    assert eps["blocks.3.mlp.fc.weight"] == pytest.approx(1e-8 / 2 / 2) and eps["wte.weight"] == 1e-8
    assert train_spec(target).steps == 2


def test_muon_recipe_builds_muon_and_adamw() -> None:
    from hptransfer.parametrization import MuonAdamW

    r = parse_recipe({**GPT_DEPTH, "optimizer": {"name": "muon", "lr": 0.002, "muon_lr_ratio": 5.0}})
    opt = build(r.at(32)).optimizer
    assert isinstance(opt, MuonAdamW)
    lrs = {g["family"]: g["lr"] for g in opt.param_groups if "blocks.0.attn.q_proj.weight" in g["param_names"]
           or "wte.weight" in g["param_names"]}
    assert lrs == {"spectral": pytest.approx(0.01), "adam": pytest.approx(0.002)}
