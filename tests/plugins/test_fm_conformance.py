"""The FM plugin passes the public conformance suite (micro config, CPU, seconds)."""
import pytest

from cmraudit.testing import parametrize_with_checks
from cmraudit_fm import FMGenerator


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@parametrize_with_checks([FMGenerator, (FMGenerator, {**FMGenerator.conformance_params(), "conditioning": "controlnet",
                                                       "solver": "heun", "ot_pairing": True})])
def test_fm_conformance(check):
    check()
