"""The FM plugin passes the public conformance suite (micro config, CPU, seconds)."""
import pytest
import torch

from cmraudit.testing import parametrize_with_checks
from cmraudit_fm import FMGenerator


@pytest.fixture(autouse=True)
def _one_thread():
    # micro networks: one intra-op thread is faster and immune to CPU oversubscription
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@parametrize_with_checks([FMGenerator, (FMGenerator, {**FMGenerator.conformance_params(), "conditioning": "controlnet",
                                                       "solver": "heun", "ot_pairing": True})])
def test_fm_conformance(check):
    check()
