"""Planted-copy transforms: what a memorising generator does to a training slice.

The copy search promises invariance to this family (docs/privacy.md, "What counts as a copy");
the same functions plant copies for the copycat reference generator, the audit's own recall
self-check and the seed-sweep benchmark, so the promise, the check and the test share one
definition. Images are [H, W] float arrays on the [-1, 1] scale; every draw comes from ``rng``.
Distances scale with image size: shifts and elastic displacements are given at 64² and scaled by
``H / 64``; blur sigma likewise.

| name | what | range (at 64²) |
| --- | --- | --- |
| exact | unchanged | |
| flip | horizontal, vertical or both | |
| rot90 | rotation by 90°, 180° or 270°, or a transpose (the rest of the dihedral group) | |
| rotation | rotation about the centre | 5°–20° either way |
| shift | integer shift per axis | 1–4 px |
| gamma | ((x+1)/2)^g rescaled | g in [0.7, 1.4] |
| window | new window/level: clip to [lo, hi] then rescale to [-1, 1] | lo in [-1, -0.7], hi in [0.7, 1] |
| contrast | x·c, clipped | c in [0.7, 1.3] |
| noise | additive Gaussian | σ in [0.02, 0.05] |
| blur | Gaussian blur | σ in [0.5, 1] px |
| elastic | smooth random displacement field | max 2 px |
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError

COPY_TRANSFORMS = (
    "exact",
    "flip",
    "rot90",
    "rotation",
    "shift",
    "gamma",
    "window",
    "contrast",
    "noise",
    "blur",
    "elastic",
)


def _scale(img: np.ndarray) -> float:
    return img.shape[-1] / 64.0


def apply_transform(img: np.ndarray, kind: str, rng: np.random.Generator, *, msk: np.ndarray | None = None,
                    max_rotation_deg: float = 20.0, max_shift_px: float = 4.0, noise_sigma: float = 0.05):
    """One random draw of transform ``kind`` on ``img`` (and the same geometry on ``msk``). Returns (img, msk)."""
    from scipy import ndimage

    img = np.asarray(img, dtype=np.float32)
    same = lambda f: (f(img), None if msk is None else f(msk))  # noqa: E731
    if kind == "exact":
        return img.copy(), None if msk is None else msk.copy()
    if kind == "flip":
        axes = [(-1,), (-2,), (-1, -2)][rng.integers(3)]
        return same(lambda a: np.flip(a, axes).copy())
    if kind == "rot90":
        k = int(rng.integers(4))
        if k == 0:  # the transpose (and its 3 rotations cover the rest of the dihedral group)
            return same(lambda a: np.ascontiguousarray(np.swapaxes(a, -1, -2)))
        return same(lambda a: np.ascontiguousarray(np.rot90(a, k, axes=(-2, -1))))
    if kind == "rotation":
        ang = float(rng.uniform(min(5.0, max_rotation_deg), max_rotation_deg)) * (1 if rng.random() < 0.5 else -1)
        out = ndimage.rotate(img, ang, reshape=False, order=1, mode="nearest")
        return out, None if msk is None else ndimage.rotate(msk, ang, reshape=False, order=0, mode="nearest")
    if kind == "shift":
        m = max(1, int(round(max_shift_px * _scale(img))))
        dy, dx = (int(rng.integers(1, m + 1)) * (1 if rng.random() < 0.5 else -1) for _ in range(2))
        return same(lambda a: ndimage.shift(a, (dy, dx), order=0, mode="nearest"))
    if kind == "gamma":
        g = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
        return (np.clip((img + 1) / 2, 0, 1) ** g * 2 - 1).astype(np.float32), None if msk is None else msk.copy()
    if kind == "window":
        lo, hi = float(rng.uniform(-1.0, -0.7)), float(rng.uniform(0.7, 1.0))
        return ((np.clip(img, lo, hi) - lo) / (hi - lo) * 2 - 1).astype(np.float32), None if msk is None else msk.copy()
    if kind == "contrast":
        c = float(rng.uniform(0.7, 1.3))
        return np.clip(img * c, -1, 1).astype(np.float32), None if msk is None else msk.copy()
    if kind == "noise":
        s = float(rng.uniform(min(0.02, noise_sigma), noise_sigma))
        return np.clip(img + rng.normal(0, s, img.shape), -1, 1).astype(np.float32), None if msk is None else msk.copy()
    if kind == "blur":
        s = float(rng.uniform(0.5, 1.0)) * _scale(img)
        return ndimage.gaussian_filter(img, s).astype(np.float32), None if msk is None else msk.copy()
    if kind == "elastic":
        h, w = img.shape[-2:]
        field = [ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), 4.0 * _scale(img)) for _ in range(2)]
        peak = max(float(np.abs(f).max()) for f in field) or 1.0
        amp = float(rng.uniform(1.0, 2.0)) * _scale(img) / peak
        yy, xx = np.mgrid[:h, :w].astype(np.float64)
        coords = np.stack([yy + amp * field[0], xx + amp * field[1]])
        out = ndimage.map_coordinates(img, coords, order=1, mode="nearest").astype(np.float32)
        return out, None if msk is None else ndimage.map_coordinates(msk, coords, order=0, mode="nearest")
    raise UsageError(f"unknown copy transform {kind!r}; expected one of {', '.join(COPY_TRANSFORMS)}")


def plant_copies(base_images: np.ndarray, idx: np.ndarray, kinds, rng: np.random.Generator, **kw) -> np.ndarray:
    """Transformed copies of ``base_images[idx]``, one transform kind per copy ([n, H, W] float32)."""
    out = np.empty((len(idx), *base_images.shape[-2:]), np.float32)
    for j, (i, kind) in enumerate(zip(idx, kinds)):
        out[j] = apply_transform(np.asarray(base_images[i]), kind, rng, **kw)[0]
    return out
