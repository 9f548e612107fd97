"""A tuned tiny recipe shared by the transfer and target-file tests (tuned once per session)."""

from __future__ import annotations

import pytest
from _helpers import transfer_recipe

import hptransfer
from hptransfer.recipe import parse_recipe


@pytest.fixture(scope="session")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[hptransfer.Recipe, object]:
    tmp = tmp_path_factory.mktemp("transfer")  # one study for the whole folder
    rec = parse_recipe(transfer_recipe(tmp))
    res = hptransfer.tune(rec, quiet=True)
    return rec, res
