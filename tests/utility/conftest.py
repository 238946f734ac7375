import pytest


@pytest.fixture(autouse=True)
def _pinned(one_torch_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""
