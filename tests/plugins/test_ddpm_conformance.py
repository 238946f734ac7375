"""The DDPM plugin passes the public conformance suite (micro config, CPU)."""
from cmraudit.testing import parametrize_with_checks
from cmraudit_ddpm import DDPMGenerator


@parametrize_with_checks([DDPMGenerator])
def test_ddpm_conformance(check):
    check()
