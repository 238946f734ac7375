import numpy as np
import pytest
import torch

from cmraudit.errors import UsageError
from cmraudit.fidelity.masks import check_masks
from cmraudit.fidelity.paired import compute_ms_ssim, compute_psnr, compute_ssim, ms_ssim_scales


def _imgs(n, size, seed):
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter

    return np.clip(np.stack([gaussian_filter(rng.normal(size=(size, size)), 2) * 3 for _ in range(n)]), -1, 1)


def test_psnr_known_value():
    x = np.zeros((2, 8, 8))
    y = x + 0.1  # MSE 0.01, range 2 → 10·log10(4/0.01) = 26.02 dB
    assert compute_psnr(x, y) == pytest.approx([10 * np.log10(400)] * 2)
    assert compute_psnr(x, x)[0] == 100.0


def test_ssim_matches_monai():
    from monai.metrics import SSIMMetric

    x, y = _imgs(4, 64, 0), _imgs(4, 64, 1)
    ref = SSIMMetric(spatial_dims=2, data_range=2.0, win_size=11, kernel_sigma=1.5, reduction="none")(
        torch.tensor(x, dtype=torch.float64)[:, None], torch.tensor(y, dtype=torch.float64)[:, None])
    assert compute_ssim(x, y) == pytest.approx(ref.numpy().ravel(), abs=1e-5)
    assert compute_ssim(x, x) == pytest.approx(1.0)


@pytest.mark.parametrize("size,scales", [(64, 3), (128, 4)])
def test_ms_ssim_valid_at_64_and_128(size, scales):
    assert ms_ssim_scales(size, size) == scales
    x = _imgs(3, size, 2)
    assert compute_ms_ssim(x, x) == pytest.approx(1.0)
    vals = [
        compute_ms_ssim(x, np.clip(x + s * np.random.default_rng(3).normal(size=x.shape), -1, 1)).mean()
        for s in (0.05, 0.2, 0.5)
    ]
    assert vals[0] > vals[1] > vals[2] > 0
    with pytest.raises(UsageError):
        compute_ms_ssim(x[:, :16, :16], x[:, :16, :16], n_scales=4)


def _heart(size=48, ring=True, rv=True, split_lv=False):
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - 24, xx - 24)
    m = np.zeros((size, size), np.uint8)
    m[r < 10] = 2
    m[r < 6] = 3
    if not ring:
        m[(r >= 6) & (r < 10) & (xx > 24) & (abs(yy - 24) < 2)] = 0  # gap in the MYO ring
        m[(r < 10) & (xx > 24) & (abs(yy - 24) < 2)] = 3  # LV leaks through it
    if rv:
        m[(np.hypot(yy - 24, xx - 37) < 4) & (m == 0)] = 1
    if split_lv:
        m[5:8, 5:8] = 3
    return m


def test_mask_checks_on_crafted_masks():
    masks = np.stack([_heart(), _heart(ring=False), _heart(rv=False), _heart(split_lv=True)])
    far = _heart(rv=False)
    far[40:44, 2:6] = 1  # RV far from the MYO
    c = check_masks(np.concatenate([masks, far[None]]))
    assert list(c.myo_closed) == [1, 0, 1, 0, 1]
    assert list(c.rv_adjacent) == [1, 1, -1, 1, 0]
    assert list(c.one_component[:, 2]) == [1, 1, 1, 0, 1]
    assert list(c.all_checks) == [True, False, True, False, False]
