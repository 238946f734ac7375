import numpy as np
import pytest

from cmraudit.data.dataset import Dataset
from cmraudit.errors import NotFittedError, UsageError
from cmraudit.features.radiomic import RadiomicFeatures, feature_names, radiomic_features


def _slice(value_lv=0.5, size=32):
    m = np.zeros((size, size), np.uint8)
    m[8:18, 8:18] = 3  # 10×10 LV square
    im = np.full((size, size), -0.8, np.float32)
    im[m == 3] = value_lv
    return im, m


def test_known_values_on_a_constant_square():
    im, m = _slice()
    f = dict(zip(feature_names(), radiomic_features(im[None], m[None], np.array([[2.0, 1.0]]))[0]))
    assert f["LV_area"] == pytest.approx(100 * 2.0)  # mm²
    assert f["LV_perimeter"] == pytest.approx(20 * 2.0 + 20 * 1.0)  # 20 vertical edges × 2 mm + 20 horizontal × 1 mm
    assert f["LV_mean"] == pytest.approx(0.5) and f["LV_std"] == pytest.approx(0.0)
    assert (
        f["LV_glcm_contrast"] == 0
        and f["LV_glcm_energy"] == pytest.approx(1.0)
        and f["LV_glcm_homogeneity"] == pytest.approx(1.0)
    )
    assert f["RV_area"] == 0 and np.isnan(f["RV_mean"])  # absent structure: undefined intensities
    assert f["image_glcm_contrast"] > 0


def test_zscore_on_reference_and_absent_structure_maps_to_zero():
    rng = np.random.default_rng(0)
    ims, mks = zip(*[_slice(v) for v in rng.uniform(0.2, 0.9, 20)])
    ds = Dataset(images=np.array(ims), masks=np.array(mks), patient_id=np.array([f"p{i}" for i in range(20)], object))
    with pytest.raises(NotFittedError):
        RadiomicFeatures().transform(ds)
    fx = RadiomicFeatures()
    z = fx.fit_transform(ds)
    assert z.shape == (20, len(feature_names())) and np.isfinite(z).all()
    i = feature_names().index("LV_mean")
    assert z[:, i].mean() == pytest.approx(0, abs=1e-5) and z[:, i].std() == pytest.approx(1, abs=1e-4)
    assert np.array_equal(z, fx.transform(ds))
    with pytest.raises(UsageError):
        fx.transform_images(ds.images)
