"""Radiomic feature space: weight-free, hand-crafted statistics inside the cardiac masks.

In the spirit of the Fréchet Radiomic Distance (Konz, Osuala et al. 2024, arXiv 2412.01496):
medical-image features that need no pretrained network. This is a compact re-implementation
(not pyradiomics, not the FRD feature set): per slice, for each region — RV, MYO, LV (from
the slice's mask) and the whole image — it computes

- **shape** (structures only): area (mm², or px² when spacing is unknown), perimeter (mm),
  compactness 4πA/P², elongation √(λ_min/λ_max) of the pixel-coordinate covariance;
- **first order** of intensities in the region ([-1, 1] scale): mean, standard deviation,
  skewness, excess kurtosis, 10th / 50th / 90th percentiles, energy (mean of squares), entropy
  (bits, 16 bins on [-1, 1]);
- **texture** from a grey-level co-occurrence matrix (16 levels on [-1, 1], offsets 1 px at
  0°, 45°, 90°, 135°, symmetric, both pixels inside the region, averaged over directions):
  contrast, dissimilarity, homogeneity, energy (ASM), correlation, entropy.

That is 19 features per structure and 15 for the image: 72 per slice. A structure absent from
a slice has area 0 and its intensity/texture features undefined (NaN). :class:`RadiomicFeatures`
z-scores every feature with the mean and standard deviation of the reference set it was
fitted on (the real data), and NaNs become 0 (the reference mean) after z-scoring, so every
feature weighs the same in Euclidean distances. Features that are constant in the reference
get unit scale.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import NotFittedError, UsageError

STRUCTURE_NAMES = ("RV", "MYO", "LV")
FIRST_ORDER = ("mean", "std", "skewness", "kurtosis", "p10", "p50", "p90", "energy", "entropy")
TEXTURE = ("glcm_contrast", "glcm_dissimilarity", "glcm_homogeneity", "glcm_energy", "glcm_correlation", "glcm_entropy")
SHAPE = ("area", "perimeter", "compactness", "elongation")
LEVELS = 16
_OFFSETS = ((0, 1), (1, 1), (1, 0), (1, -1))


def feature_names() -> list[str]:
    names = [f"{s}_{f}" for s in STRUCTURE_NAMES for f in SHAPE + FIRST_ORDER + TEXTURE]
    return names + [f"image_{f}" for f in FIRST_ORDER + TEXTURE]


def _first_order(v: np.ndarray) -> list[float]:
    if v.size == 0:
        return [np.nan] * len(FIRST_ORDER)
    m, s = v.mean(), v.std()
    z = (v - m) / s if s > 1e-12 else np.zeros_like(v)
    hist = np.histogram(v, bins=LEVELS, range=(-1.0, 1.0))[0] / v.size
    nz = hist[hist > 0]
    p10, p50, p90 = np.percentile(v, (10, 50, 90))
    return [m, s, (z**3).mean(), (z**4).mean() - 3.0, p10, p50, p90, (v**2).mean(), float(-(nz * np.log2(nz)).sum())]


def _glcm(q: np.ndarray, region: np.ndarray) -> list[float]:
    h, w = q.shape
    P = np.zeros((LEVELS, LEVELS))
    for dy, dx in _OFFSETS:
        y0, y1 = max(0, -dy), h - max(0, dy)
        x0, x1 = max(0, -dx), w - max(0, dx)
        a_q, b_q = q[y0:y1, x0:x1], q[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        ok = region[y0:y1, x0:x1] & region[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        if ok.any():
            c = np.bincount(a_q[ok] * LEVELS + b_q[ok], minlength=LEVELS * LEVELS).reshape(LEVELS, LEVELS)
            c = c + c.T
            P += c / c.sum()
    if P.sum() == 0:
        return [np.nan] * len(TEXTURE)
    P /= P.sum()
    i, j = np.mgrid[:LEVELS, :LEVELS]
    mu = (i * P).sum()
    var = (((i - mu) ** 2) * P).sum()
    corr = (((i - mu) * (j - mu) * P).sum() / var) if var > 1e-12 else 1.0
    nz = P[P > 0]
    return [((i - j) ** 2 * P).sum(), (np.abs(i - j) * P).sum(), (P / (1 + (i - j) ** 2)).sum(), (P**2).sum(), corr,
            float(-(nz * np.log2(nz)).sum())]


def _shape(region: np.ndarray, spacing: tuple[float, float]) -> list[float]:
    area_px = int(region.sum())
    if area_px == 0:
        return [0.0, 0.0, np.nan, np.nan]
    sy, sx = spacing
    area = area_px * sy * sx
    # perimeter: exposed pixel edges (horizontal edges have length sx, vertical sy)
    pad = np.pad(region, 1)
    vert = (pad[1:-1, 1:] != pad[1:-1, :-1]).sum()  # edges between columns → length sy
    horiz = (pad[1:, 1:-1] != pad[:-1, 1:-1]).sum()
    perim = vert * sy + horiz * sx
    yy, xx = np.nonzero(region)
    if area_px >= 3:
        cov = np.cov(np.stack([yy * sy, xx * sx]))
        ev = np.linalg.eigvalsh(cov)
        elong = float(np.sqrt(max(ev[0], 0) / ev[1])) if ev[1] > 1e-12 else 1.0
    else:
        elong = 1.0
    return [area, perim, 4 * np.pi * area / perim**2, elong]


def radiomic_features(images: np.ndarray, masks: np.ndarray, spacing_mm: np.ndarray | None = None) -> np.ndarray:
    """Raw (not normalised) radiomic features [N, 72] float64; NaN where undefined."""
    images, masks = np.asarray(images), np.asarray(masks)
    if images.shape != masks.shape or images.ndim != 3:
        raise UsageError(
            f"radiomic features need images and masks [N, H, W] of one shape, got {images.shape} and {masks.shape}"
        )
    n = len(images)
    sp = np.ones((n, 2)) if spacing_mm is None else np.asarray(spacing_mm, dtype=float).reshape(n, 2)
    sp = np.where(np.isfinite(sp), sp, 1.0)
    out = np.empty((n, len(feature_names())))
    for k in range(n):
        im = np.clip(np.asarray(images[k], dtype=np.float64), -1.0, 1.0)
        mk = np.asarray(masks[k])
        q = np.minimum(((im + 1.0) / 2.0 * LEVELS).astype(np.int64), LEVELS - 1)
        row: list[float] = []
        for lab in (1, 2, 3):
            region = mk == lab
            row += _shape(region, tuple(sp[k])) + _first_order(im[region]) + _glcm(q, region)
        full = np.ones_like(mk, dtype=bool)
        row += _first_order(im.ravel()) + _glcm(q, full)
        out[k] = row
    return out


class RadiomicFeatures:
    """Z-scored radiomic features; ``fit`` learns the per-feature mean and scale on the reference (real) set."""

    name = "radiomic"

    def __init__(self):
        pass

    def get_params(self) -> dict:
        return {}

    def fit(self, pool, *, seed: int = 0, progress: bool = False) -> "RadiomicFeatures":
        """``pool``: the reference Dataset (the real images the synthetic set is compared with)."""
        if pool is None or not hasattr(pool, "masks"):
            raise UsageError("radiomic features are fitted on a Dataset with masks (the real reference set); got none")
        raw = radiomic_features(pool.images, pool.masks, pool.spacing_mm)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: structure absent everywhere
            mean = np.nanmean(raw, axis=0)
            std = np.nanstd(raw, axis=0)
        self.mean_ = np.where(np.isfinite(mean), mean, 0.0)
        self.scale_ = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self.raw_fit_ = raw
        return self

    def fit_transform(self, pool) -> np.ndarray:
        """``fit(pool)`` then ``transform(pool)``, computing the raw features once."""
        self.fit(pool)
        return self._normalise(self.raw_fit_)

    def transform(self, ds) -> np.ndarray:
        """[N, 72] float32 z-scored features of a Dataset (images + masks + spacing)."""
        if getattr(self, "mean_", None) is None:
            raise NotFittedError("RadiomicFeatures is not fitted; call fit(real_dataset) first")
        return self._normalise(radiomic_features(ds.images, ds.masks, getattr(ds, "spacing_mm", None)))

    def _normalise(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.mean_) / self.scale_
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def transform_images(self, images):
        raise UsageError(
            "radiomic features are computed inside the masks: call transform(dataset), not transform_images"
        )
