"""mup interop: .bsh files written here are mup's format (both ways), and a model prepared by
mup.set_base_shapes gets the same per-parameter learning rates as mup.MuAdam / MuSGD."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from torch import nn

mup = pytest.importorskip("mup")

import hptransfer as hpt  # noqa: E402
from hptransfer.errors import ParametrizationError  # noqa: E402
from hptransfer.parametrization import read_bsh, table_from_mup, write_bsh  # noqa: E402


class Net(nn.Module):
    def __init__(self, width: int, mu: bool = False):
        super().__init__()
        self.emb = nn.Embedding(30, width)
        self.hidden = nn.Linear(width, 2 * width)
        self.back = nn.Linear(2 * width, width)
        self.norm = nn.LayerNorm(width)
        self.readout = mup.MuReadout(width, 7) if mu else nn.Linear(width, 7)

    def forward(self, idx):
        return self.readout(self.norm(self.back(F.relu(self.hidden(self.emb(idx))))))


def test_bsh_round_trip_with_mup(tmp_path):
    ours = write_bsh(hpt.parametrize(Net, width=64, base_width=16), tmp_path / "ours.bsh")
    theirs = tmp_path / "mup.bsh"
    mup.make_base_shapes(Net(16), Net(32), savefile=str(theirs))
    assert read_bsh(ours) == read_bsh(theirs)
    mu_model = Net(64, mu=True)
    mup.set_base_shapes(mu_model, str(ours))  # mup reads the file written here
    assert {n: p.infshape.base_shape() for n, p in mu_model.named_parameters()} == read_bsh(theirs)
    with pytest.raises(ParametrizationError, match="base-shape file"):
        (tmp_path / "bad.bsh").write_text("- 1\n- 2\n")
        read_bsh(tmp_path / "bad.bsh")


@pytest.mark.parametrize("opt_name, mu_opt", [("adam", "MuAdam"), ("sgd", "MuSGD")])
def test_a_mup_prepared_model_gets_mups_learning_rates(opt_name, mu_opt):
    model = Net(64, mu=True)
    mup.set_base_shapes(model, Net(16, mu=True), delta=Net(32, mu=True))
    reference = getattr(mup, mu_opt)(model.parameters(), lr=0.1)
    by_tensor = {id(p): g["lr"] for g in reference.param_groups for p in g["params"]}
    table_from_mup(model)
    ours = {n: g["lr"] for g in hpt.param_groups(model, lr=0.1, optimizer=opt_name) for n in g["param_names"]}
    for name, p in model.named_parameters():
        assert ours[name] == pytest.approx(by_tensor[id(p)]), name
    assert hpt.scaling_table(model).params["hidden.weight"].role == "hidden"
    assert not hpt.scaling_table(model).module_scalings  # no hook added: MuReadout already scales


def test_a_model_mup_never_saw_is_refused():
    with pytest.raises(ParametrizationError, match="set_base_shapes"):
        table_from_mup(Net(16))


def test_the_migration_page_runs(tmp_path, monkeypatch, capsys):
    import re

    from _helpers import ROOT

    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "migrating_from_mup.md").read_text(), flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "docs/migrating_from_mup.md", "exec"), {"__name__": "__doc__"})
    out = capsys.readouterr().out
    assert "mup " in out and "hptransfer " in out
