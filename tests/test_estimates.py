import numpy as np
import pytest

from cmraudit.estimates import Estimate, bootstrap_mean_ci, patient_bootstrap, rate_estimate, skipped, wilson_ci


def test_wilson_golden_values():
    # reference values of the Wilson score interval (z = 1.959964)
    lo, hi = wilson_ci(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)


def test_estimate_shape_and_skipped():
    d = rate_estimate(3, 100, unit="slice").to_dict()
    assert set(d) >= {"value", "ci", "n", "unit"} and d["unit"] == "slice" and d["n"] == 100
    assert d["ci"][0] < 0.03 < d["ci"][1]
    with pytest.raises(ValueError):
        Estimate(value=0.1, ci=None, n=1, unit="voxel")
    assert skipped("no weights") == {"status": "skipped", "reason": "no weights"}


def test_patient_bootstrap_is_wider_than_slice_bootstrap_for_correlated_slices():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(20), 10)
    values = rng.normal(0, 1, 20)[patients] + rng.normal(0, 0.05, 200)  # slices of a patient nearly identical
    by_patient = patient_bootstrap(lambda idx: values[idx].mean(), patients, seed=0, n_resamples=500)
    by_slice = patient_bootstrap(lambda idx: values[idx].mean(), np.arange(200), seed=0, n_resamples=500)
    assert (by_patient[1] - by_patient[0]) > 2 * (by_slice[1] - by_slice[0])


def test_bootstrap_mean_ci_matches_generic_patient_bootstrap():
    rng = np.random.default_rng(1)
    patients = np.repeat(np.arange(15), 4)
    values = rng.normal(0, 1, 60)
    sums, counts = np.bincount(patients, weights=values), np.bincount(patients)
    fast = bootstrap_mean_ci(sums, counts, seed=0, n_resamples=4000)
    slow = patient_bootstrap(lambda idx: values[idx].mean(), patients, seed=1, n_resamples=4000)
    assert fast == pytest.approx(slow, abs=0.05)
