"""The scaling table: serialisable, survives copies and checkpoints, and DDP/compile name prefixes
(hptransfer.parametrization._table)."""

from __future__ import annotations

import copy
import os
import socket

import torch
from _helpers import gpt_tiny
from torch import nn

import hptransfer as hpt
from hptransfer.models import mlp
from hptransfer.parametrization import ScalingTable
from hptransfer.parametrization._table import strip_prefix


def test_table_survives_deepcopy_and_is_serialisable():
    x = torch.randint(0, 40, (2, 8))
    m = hpt.parametrize(gpt_tiny, width=64, base_width=16, example_input=x)
    c = copy.deepcopy(m)
    assert torch.equal(c(x), m(x))
    assert hpt.scaling_table(c).to_dict() == hpt.scaling_table(m).to_dict()
    t = ScalingTable.from_dict(hpt.scaling_table(m).to_dict())
    assert t.to_dict() == hpt.scaling_table(m).to_dict()
    assert [g["lr"] for g in hpt.param_groups(c, lr=1e-2)] == [g["lr"] for g in hpt.param_groups(m, lr=1e-2)]


def test_state_dict_round_trip_into_rebuilt_model():
    x = torch.randint(0, 40, (2, 8))
    torch.manual_seed(1)
    m = hpt.parametrize(gpt_tiny, width=64, base_width=16, example_input=x)
    torch.manual_seed(2)
    fresh = hpt.parametrize(gpt_tiny, width=64, base_width=16, example_input=x)
    assert not torch.equal(fresh(x), m(x))
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh(x), m(x))
    assert set(m.state_dict()) == set(gpt_tiny(64).state_dict())  # no extra keys in checkpoints


def test_ddp_prefix():
    assert strip_prefix("module.embed.weight") == "embed.weight"  # a prefix, not a character set
    assert strip_prefix("module._orig_mod.module.x") == "x"
    assert strip_prefix("modules.weight") == "modules.weight"
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        m = hpt.parametrize(mlp, width=64, base_width=16)
        ddp = nn.parallel.DistributedDataParallel(m)
        groups = hpt.param_groups(ddp, lr=1.0)
        lrs = {n: g["lr"] for g in groups for n in g["param_names"]}
        assert lrs["module.hidden.0.weight"] == 0.25 and lrs["module.readout.weight"] == 1.0
        x = torch.randn(3, 32)
        assert torch.allclose(ddp(x), m(x))
    finally:
        dist.destroy_process_group()
