"""The LDM plugin passes the public conformance suite (micro config, CPU, seconds)."""
import pytest

from cmraudit.testing import parametrize_with_checks
from cmraudit_ldm import LDMGenerator


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@parametrize_with_checks([LDMGenerator])
def test_ldm_conformance(check):
    check()
