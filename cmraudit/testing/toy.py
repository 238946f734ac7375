"""A tiny deterministic cardiac-like dataset for tests and the conformance suite.

Each slice: an LV disc (bright), a MYO ring around it (dark), an RV crescent beside it
(bright) on a mid-grey background with mild noise. Per-patient centre, radii and contrast
vary, so patients differ. Not the phantom (``cmraudit.data.phantom``): much simpler, built
in milliseconds, no dependency on other modules.
"""
from __future__ import annotations

import numpy as np

from ..data.dataset import Dataset

#: mean image value per label (bg, RV, MYO, LV) before per-patient jitter
LABEL_MEANS = (-0.4, 0.5, -0.8, 0.8)


def make_toy_dataset(*, n_patients: int = 6, slices: int = 4, size: int = 32, vendors: str = "AB", seed: int = 0,
                     noise: float = 0.05, id_prefix: str = "toy") -> Dataset:
    """``n_patients × slices`` slices of ``size``² px; vendor k shifts the background brightness by 0.15·k."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images, masks, pids, vend, sl = [], [], [], [], []
    for p in range(n_patients):
        v = vendors[p % len(vendors)] if vendors else ""
        vshift = 0.15 * (vendors.index(v) if v else 0)
        cy, cx = size / 2 + rng.uniform(-2, 2, size=2) * size / 32
        base_r = rng.uniform(0.14, 0.2) * size
        for s in range(slices):
            r_lv = base_r * (1 - 0.08 * s)
            r_myo = r_lv + 0.08 * size
            d = np.hypot(yy - cy, xx - cx)
            m = np.zeros((size, size), np.uint8)
            d_rv = np.hypot(yy - cy, xx - (cx - r_myo * 1.15))
            m[(d_rv < r_myo * 0.9)] = 1
            m[d < r_myo] = 2
            m[d < r_lv] = 3
            img = np.take(np.array(LABEL_MEANS) + np.array([vshift, 0, 0, 0]), m) + rng.normal(0, noise, (size, size))
            images.append(np.clip(img, -1, 1).astype(np.float32))
            masks.append(m)
            pids.append(f"{id_prefix}{p:03d}")
            vend.append(v)
            sl.append(s)
    n = len(images)
    return Dataset(
        images=np.stack(images),
        masks=np.stack(masks),
        patient_id=np.array(pids, dtype=object),
        vendor=np.array(vend, dtype=object),
        slice_index=np.array(sl),
        source=np.full(n, "toy", dtype=object),
        frame=np.full(n, "ED", dtype=object),
        spacing_mm=np.full((n, 2), 1.5),
    )
