"""Session-wide test settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The test models are tiny: a second intra-op thread buys nothing, and when another
    # process shares the 2 cores, OpenMP spin-waiting made a 1 s training loop take 35-45 s.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _fresh_warnings():
    # hptransfer logs each distinct warning once per process; every test starts with none logged yet.
    import hptransfer.errors
    from hptransfer.parametrization._init_law import clear_cache

    hptransfer.errors._warned.clear()
    clear_cache()  # each test measures its factories' init itself (within a test, a sweep reuses it)
    yield
