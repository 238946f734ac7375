"""DP refusals of the built-in plugins: parameters DP-SGD cannot cover are usage errors, never silent."""
import pytest

from cmraudit.errors import UsageError
from cmraudit.dp import DPConfig
from cmraudit.testing.toy import make_toy_dataset
from cmraudit_fm import FMGenerator


def test_fm_refuses_ot_pairing_under_dp():
    gen = FMGenerator(**{**FMGenerator.conformance_params(), "ot_pairing": True})
    with pytest.raises(UsageError, match="ot_pairing"):
        gen.fit(make_toy_dataset(n_patients=12, slices=1), seed=0, progress=False, dp=DPConfig(epsilon=8.0, delta=1e-3))


def test_dp_inf_trains_without_dp():
    """--dp-epsilon inf is "no DP": the fit runs normally and reports no DP block."""
    from cmraudit_ddpm import DDPMGenerator

    gen = DDPMGenerator(**{**DDPMGenerator.conformance_params(), "steps": 1, "mask_steps": 1})
    gen.fit(make_toy_dataset(n_patients=3, slices=1), seed=0, progress=False, dp=DPConfig(epsilon=float("inf")))
    assert gen.dp_ is None and gen.training_["image"]["dp"] is None
