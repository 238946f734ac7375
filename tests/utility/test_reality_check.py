"""Reality check of the utility stage on the phantom (quick preset): real data trains a good
segmenter, a copy of the real data scores like real, noise images score far lower."""
import numpy as np
import pytest

from cmraudit.data.dataset import Dataset
from cmraudit.data.splits import split_patients

phantom = pytest.importorskip("cmraudit.data.phantom")


@pytest.fixture(scope="module")
def parts():
    ds = phantom.make_phantom(phantom.PhantomConfig(subjects=24), seed=3)
    return split_patients(ds, seed=0).apply(ds)


def _synthetic(train, images, tag):
    return Dataset(images=images.astype(np.float32), masks=np.asarray(train.masks).copy(),
                   patient_id=np.array([f"{tag}-{i}" for i in range(len(train))], dtype=object),
                   vendor=train.vendor, source=np.full(len(train), f"synthetic:{tag}", dtype=object),
                   spacing_mm=train.spacing_mm)


@pytest.mark.slow
def test_real_copycat_noise(parts):
    from cmraudit.utility.evaluate import evaluate_utility

    train, test = parts["train"], parts["test"]
    rng = np.random.default_rng(0)
    copy = _synthetic(
        train, np.clip(np.asarray(train.images) + rng.normal(0, 0.02, train.images.shape), -1, 1), "copycat"
    )
    noise = _synthetic(train, rng.uniform(-1, 1, train.images.shape), "noise")
    r1 = evaluate_utility(train=train, synthetic=copy, test=test, seed=0, regimes=("real", "synthetic"),
                          cross_vendor=False, progress=False).to_dict()
    r2 = evaluate_utility(train=train, synthetic=noise, test=test, seed=0, regimes=("synthetic",),
                          cross_vendor=False, progress=False).to_dict()
    real = r1["regimes"]["real"]["mean_dice"]["value"]
    copycat = r1["regimes"]["synthetic"]["mean_dice"]["value"]
    noisy = r2["regimes"]["synthetic"]["mean_dice"]["value"]
    print(f"mean Dice real {real:.3f} copycat {copycat:.3f} noise {noisy:.3f}")
    assert r1["regimes"]["real"]["n_test_patients"] == len(set(test.patient_id))
    assert real >= 0.80, r1["regimes"]["real"]["dice"]
    assert abs(copycat - real) < 0.05
    assert noisy < real - 0.4, noisy
    assert r2["regimes"]["synthetic"]["mean_hd95_mm"]["value"] > 2 * r1["regimes"]["real"]["mean_hd95_mm"]["value"]
