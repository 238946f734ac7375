"""Fixtures shared by every test directory."""
import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the duration of a test, restored afterwards.

    Micro networks run faster on one thread, and multi-threaded torch on a machine whose cores
    are shared by parallel jobs is several times slower than one thread. Directories and modules
    opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` or an autouse wrapper.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
