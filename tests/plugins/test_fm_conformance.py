"""The FM plugin passes the public conformance suite (micro config, CPU, seconds)."""
from cmraudit.testing import parametrize_with_checks
from cmraudit_fm import FMGenerator


@parametrize_with_checks([FMGenerator, (FMGenerator, {**FMGenerator.conformance_params(), "conditioning": "controlnet",
                                                       "solver": "heun", "ot_pairing": True})])
def test_fm_conformance(check):
    check()
