"""Optimizer groups: per-parameter LR, weight decay and eps for the Adam and SGD families
(hptransfer.parametrization._groups)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hptransfer as hpt
from hptransfer.errors import ParametrizationError
from hptransfer.models import mlp


def test_adam_and_sgd_learning_rates():
    model = hpt.parametrize(mlp, width=128, base_width=32)
    adam = {n: g["lr"] for g in hpt.param_groups(model, lr=1.0) for n in g["param_names"]}
    assert adam == {"input.weight": 1.0, "input.bias": 1.0, "hidden.0.weight": 0.25, "hidden.0.bias": 1.0,
                    "readout.weight": 1.0, "readout.bias": 1.0}
    sgd = {n: g["lr"] for g in hpt.param_groups(model, lr=1.0, optimizer="sgd") for n in g["param_names"]}
    assert sgd == {"input.weight": 4.0, "input.bias": 4.0, "hidden.0.weight": 1.0, "hidden.0.bias": 4.0,
                   "readout.weight": 4.0, "readout.bias": 1.0}


def test_weight_decay_modes_and_eps():
    model = hpt.parametrize(mlp, width=128, base_width=32)
    groups = hpt.param_groups(model, lr=0.01, weight_decay=0.1)
    by = {n: g for g in groups for n in g["param_names"]}
    # coupled: lr * wd is what it is at the base width, for every group
    assert all(g["lr"] * g["weight_decay"] == pytest.approx(0.01 * 0.1) for g in groups)
    indep = {n: g for g in hpt.param_groups(model, lr=0.01, weight_decay=1e-4, weight_decay_mode="independent")
             for n in g["param_names"]}
    assert all(g["lr"] * g["weight_decay"] == pytest.approx(1e-4) for g in indep.values())
    mats = {n: g["weight_decay"] for g in hpt.param_groups(model, lr=0.01, weight_decay=0.1, decay="matrices")
            for n in g["param_names"]}
    assert mats["input.bias"] == 0.0 and mats["input.weight"] == pytest.approx(0.1)
    eps = {n: g["eps"] for g in hpt.param_groups(model, lr=0.01, scale_eps=True, eps=1e-8) for n in g["param_names"]}
    assert eps["hidden.0.weight"] == pytest.approx(0.25e-8) and eps["input.weight"] == pytest.approx(1e-8)
    assert by["hidden.0.weight"]["lr_mult"] == 0.25
    opt = hpt.optimizer(model, torch.optim.SGD, lr=0.1, momentum=0.9)
    assert isinstance(opt, torch.optim.SGD) and len(opt.param_groups) >= 2


def test_error_bad_optimizer_arguments():
    with pytest.raises(ParametrizationError, match="no hptransfer scaling table"):
        hpt.param_groups(mlp(8), lr=1e-3)
    m = hpt.parametrize(mlp, width=64, base_width=16)
    with pytest.raises(hpt.OptimizerConfigError, match="family"):
        hpt.optimizer(m, torch.optim.LBFGS, lr=1.0)
    with pytest.raises(hpt.OptimizerConfigError, match="weight_decay_mode"):
        hpt.param_groups(m, lr=1e-3, weight_decay_mode="decoupled-ish")
    m.extra = nn.Linear(3, 3)  # added after parametrize: no role
    with pytest.raises(ParametrizationError, match=r"'extra.weight' is not in the scaling table"):
        hpt.param_groups(m, lr=1e-3)
