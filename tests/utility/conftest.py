import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The test machine's 2 cores are shared by parallel jobs; multi-threaded torch under that
    contention is several times slower than one thread. Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
