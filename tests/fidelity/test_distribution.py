import numpy as np
import pytest
from scipy import linalg
from scipy.ndimage import gaussian_filter

from cmraudit.fidelity.frechet import compute_frechet_distance
from cmraudit.fidelity.kid import compute_kid, mmd2_unbiased
from cmraudit.fidelity.prdc import compute_prdc


def _reference_fd(x, y):
    """Float64 reference: FD via scipy.linalg.sqrtm of Σ1·Σ2 (the pytorch-fid formula)."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_matches_float64_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    y = rng.normal(loc=0.3, size=(300, 12)) @ rng.normal(size=(12, 12))
    assert compute_frechet_distance(x, y) == pytest.approx(_reference_fd(x, y), rel=1e-8, abs=1e-8)


def test_frechet_self_is_zero():
    x = np.random.default_rng(1).normal(size=(200, 30))
    assert compute_frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def _images(n, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    out = []
    for _ in range(n):
        cy, cx, r = rng.uniform(5, 11), rng.uniform(5, 11), rng.uniform(2, 5)
        out.append(((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(float) + 0.05 * rng.normal(size=(16, 16)))
    return np.stack(out)


def test_frechet_rises_monotonically_with_blur_and_noise():
    real = _images(300, 0)
    flat = real.reshape(len(real), -1)
    blur = [
        compute_frechet_distance(flat, np.stack([gaussian_filter(im, s) for im in real]).reshape(len(real), -1))
        for s in (0.5, 1.0, 2.0, 3.0)
    ]
    rng = np.random.default_rng(5)
    noise = [
        compute_frechet_distance(flat, (real + s * rng.normal(size=real.shape)).reshape(len(real), -1))
        for s in (0.1, 0.3, 0.6, 1.0)
    ]
    assert all(a < b for a, b in zip(blur, blur[1:])), blur
    assert all(a < b for a, b in zip(noise, noise[1:])), noise
    assert blur[0] > 0 and noise[0] > 0


def test_kid_same_distribution_ci_contains_zero_and_shift_does_not():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    res = compute_kid(a, b, n_subsets=50, subset_size=1000, seed=0)
    assert res.ci[0] <= 0.0 <= res.ci[1]
    shifted = compute_kid(a, b + 0.7, n_subsets=50, seed=0)
    assert shifted.ci[0] > 0 and shifted.value > 10 * abs(res.value)


def test_mmd2_unbiased_matches_explicit_double_loop():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    sxx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
    syy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    sxy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert mmd2_unbiased(x, y) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-10)


def _prdc_reference(real, fake, k):
    """The formulas of the `prdc` package (Naeem et al. 2020), brute force."""
    def pdist(a, b):
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))

    rr, ff, rf = pdist(real, real), pdist(fake, fake), pdist(real, fake)
    real_radii = np.partition(rr, k, axis=-1)[:, k]  # k+1-th smallest incl. self = k-th other
    fake_radii = np.partition(ff, k, axis=-1)[:, k]
    precision = (rf < real_radii[:, None]).any(axis=0).mean()
    recall = (rf < fake_radii[None, :]).any(axis=1).mean()
    density = (1.0 / k) * (rf < real_radii[:, None]).sum(axis=0).mean()
    coverage = (rf.min(axis=1) < real_radii).mean()
    return precision, recall, density, coverage


@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0])
def test_prdc_equals_reference_formulas(shift):
    rng = np.random.default_rng(4)
    real = rng.normal(size=(300, 8)).astype(np.float32)
    fake = (rng.normal(size=(250, 8)) * 1.3 + shift).astype(np.float32)
    got = compute_prdc(real, fake, nearest_k=5)
    ref = _prdc_reference(real.astype(np.float64), fake.astype(np.float64), 5)
    assert (got.precision, got.recall, got.coverage) == pytest.approx(ref[0:2] + ref[3:4], abs=1e-12)
    assert got.density == pytest.approx(ref[2], abs=1e-12)
