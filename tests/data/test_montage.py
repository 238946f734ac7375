"""Sample-grid PNGs for any Dataset."""
from __future__ import annotations

import numpy as np
import pytest

from cmraudit.data import Dataset
from cmraudit.data.montage import _boundaries, pick_indices, save_montage
from cmraudit.errors import UsageError


def _discs(n=5, size=32):
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, r < 10] = 2
    masks[:, r < 6] = 3
    masks[:, (r >= 10) & (r < 13) & (xx < size / 2)] = 1
    images = np.where(masks == 2, -0.5, np.where(masks > 0, 0.8, -1.0)).astype(np.float32)
    return Dataset(images=images, masks=masks, patient_id=[f"p{i}" for i in range(n)])


@pytest.mark.parametrize("overlay", ["contour", "fill", "none", "side"])
def test_writes_png_for_any_dataset(tmp_path, overlay):
    out = save_montage(_discs(), tmp_path / "sub" / "grid.png", n=4, seed=0, overlay=overlay)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_n_larger_than_dataset_and_explicit_indices(tmp_path):
    ds = _discs(3)
    assert list(pick_indices(3, 16, seed=0)) == [0, 1, 2]
    save_montage(ds, tmp_path / "a.png", n=16)
    save_montage(ds, tmp_path / "b.png", indices=[2, 0])
    with pytest.raises(UsageError, match="indices"):
        save_montage(ds, tmp_path / "c.png", indices=[5])
    with pytest.raises(UsageError, match="overlay"):
        save_montage(ds, tmp_path / "d.png", overlay="bogus")


def test_pick_indices_deterministic_and_distinct():
    a, b = pick_indices(100, 16, seed=3), pick_indices(100, 16, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 16 and not np.array_equal(a, pick_indices(100, 16, seed=4))


def test_boundaries_keep_only_edges():
    m = np.zeros((9, 9), np.uint8)
    m[2:7, 2:7] = 3
    e = _boundaries(m)
    assert e[4, 4] == 0 and e[2, 4] == 3 and e[0, 0] == 0
