"""Slice preprocessing shared by every importer (reference protocol, docs/design.md § 2).

ROI crop centred on the mask centroid (zero-padded near the border), per-slice clip to
the 1st–99.9th percentile and linear scaling to [-1, 1], optional resize (images with
area/bilinear interpolation, masks nearest-neighbour).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class PreprocessConfig:
    crop: int = 128
    clip_percentiles: tuple[float, float] = (1.0, 99.9)
    size: int | None = None  # resize the crop to size×size; None keeps the crop size

    def __post_init__(self) -> None:
        if isinstance(self.crop, bool) or not isinstance(self.crop, int) or not 8 <= self.crop <= 4096:
            raise UsageError(f"--crop {self.crop!r}: must be an integer in 8..4096")
        size = self.size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 2048):
            raise UsageError(f"--size {self.size!r}: must be an integer in 8..2048")

    def to_dict(self) -> dict:
        return asdict(self)


def mask_centroid(mask: np.ndarray) -> tuple[float, float]:
    """(row, col) centroid of the foreground; the image centre when the mask is empty."""
    rr, cc = np.nonzero(mask)
    if len(rr) == 0:
        return (mask.shape[0] - 1) / 2.0, (mask.shape[1] - 1) / 2.0
    return float(rr.mean()), float(cc.mean())


def crop_centered(arr: np.ndarray, center: tuple[float, float], size: int, *, fill: float = 0) -> np.ndarray:
    """size×size crop of a 2-D array centred on ``center``; padded with ``fill`` off the border."""
    h, w = arr.shape
    r0 = int(round(center[0])) - size // 2
    c0 = int(round(center[1])) - size // 2
    out = np.full((size, size), fill, dtype=arr.dtype)
    rs, re = max(r0, 0), min(r0 + size, h)
    cs, ce = max(c0, 0), min(c0 + size, w)
    if rs < re and cs < ce:
        out[rs - r0 : re - r0, cs - c0 : ce - c0] = arr[rs:re, cs:ce]
    return out


def normalise_intensity(img: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.9)) -> np.ndarray:
    """Clip to the given percentiles and scale linearly to [-1, 1] (float32)."""
    img = img.astype(np.float64)
    lo, hi = np.percentile(img, percentiles)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(img.shape, dtype=np.float32) - 1.0 if hi <= lo else np.zeros(img.shape, np.float32)
    img = np.clip(img, lo, hi)
    return ((img - lo) / (hi - lo) * 2.0 - 1.0).astype(np.float32)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape == (size, size):
        return img.astype(np.float32)
    import torch  # deferred: importers and the CLI load without torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    mode = "area" if size < img.shape[0] else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(t, size=(size, size), mode=mode, **kw)[0, 0].numpy().clip(-1, 1)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    if mask.shape == (size, size):
        return mask.astype(np.uint8)
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="nearest")[0, 0].numpy().astype(np.uint8)


def preprocess_slice(
    image: np.ndarray, mask: np.ndarray, cfg: PreprocessConfig, spacing: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Crop, normalise and resize one slice. Returns (image, mask, spacing_mm after resize)."""
    c = mask_centroid(mask)
    img = crop_centered(np.asarray(image, dtype=np.float64), c, cfg.crop, fill=np.nan)
    # intensity statistics from the pixels actually inside the image; padding becomes the minimum
    valid = np.isfinite(img)
    if valid.any():
        lo, hi = np.percentile(img[valid], cfg.clip_percentiles)
        img = np.where(valid, img, lo)
    img = normalise_intensity(img, cfg.clip_percentiles)
    msk = crop_centered(np.asarray(mask, dtype=np.uint8), c, cfg.crop, fill=0)
    sp = spacing if spacing is not None else (float("nan"), float("nan"))
    if cfg.size is not None and cfg.size != cfg.crop:
        img = resize_image(img, cfg.size)
        msk = resize_mask(msk, cfg.size)
        f = cfg.crop / cfg.size
        sp = (sp[0] * f, sp[1] * f)
    return img.astype(np.float32), msk.astype(np.uint8), sp
