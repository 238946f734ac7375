"""fit --resume continues an interrupted two-stage fit and reaches the same weights (CPU, same seed)."""
import pytest

from cmraudit.errors import UsageError
from cmraudit.testing import make_toy_dataset
from cmraudit_ddpm import DDPMGenerator


class Interrupt(Exception):
    pass


def _gen():
    return DDPMGenerator(**{**DDPMGenerator.conformance_params(), "mask_steps": 4, "steps": 8, "checkpoint_every": 3})


def _weights(gen):
    return {**{f"mask.{k}": v for k, v in gen.mask_model_.state_dict().items()},
            **{f"image.{k}": v for k, v in gen.image_modules_["image"].state_dict().items()}}


def test_resume_equals_uninterrupted(tmp_path):
    ds = make_toy_dataset(n_patients=4, slices=2, size=32)
    full = _gen().fit(ds, seed=4, progress=False)
    calls = []

    def stop(step, loss):  # the mask stage runs 4 steps; interrupt the image stage at its step 5
        calls.append(step)
        if len(calls) == 4 + 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        _gen().fit(ds, seed=4, progress=False, work_dir=tmp_path, callback=stop)
    assert (tmp_path / "mask" / "train_state.pt").is_file() and (tmp_path / "image" / "train_state.pt").is_file()
    resumed = _gen().fit(ds, seed=4, progress=False, work_dir=tmp_path, resume=True)
    assert resumed.training_["mask"]["resumed_from"] == 4 and resumed.training_["image"]["resumed_from"] == 3
    a, b = _weights(full), _weights(resumed)
    assert set(a) == set(b)
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert diff == 0.0, f"max weight difference {diff}"


def test_dp_not_supported_is_a_usage_error():
    with pytest.raises(UsageError, match="dp-epsilon"):
        _gen().fit(make_toy_dataset(n_patients=2, slices=1), seed=0, progress=False, dp=object())
