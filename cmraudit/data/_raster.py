"""Rasterisation helpers of the phantom: partial-volume painting, signed distances, smooth random
fields, periodic Gaussian blur (float32 FFT) and connected-component clean-up. Pure numpy/scipy."""
from __future__ import annotations

import numpy as np

from .._lazy import LazyModule

sfft = LazyModule("scipy.fft")
ndimage = LazyModule("scipy.ndimage")


def _alpha(sd: np.ndarray, px: float) -> np.ndarray:
    """Partial-volume coverage of a shape from its signed distance (mm, negative inside)."""
    return np.clip(0.5 - sd / px, 0.0, 1.0)


def _paint(img: np.ndarray, sd: np.ndarray, value, px: float) -> None:
    """Composite ``value`` over ``img`` in place with partial-volume coverage."""
    a = _alpha(sd, px)
    img += a * (value - img)


def _tex(v: float, low: float = 0.0, fine: float = 0.0) -> np.ndarray:
    """(base, low-texture, fine-texture) coefficients of a tissue whose signal is v·(1 + low·L + fine·F)."""
    return np.array([v, v * low, v * fine], np.float32)[:, None, None]


def _norm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sqrt(a² + b²); several times faster than np.hypot on float32."""
    return np.sqrt(a * a + b * b)


def _ellipse_sd(s: np.ndarray, t: np.ndarray, a, b) -> np.ndarray:
    """First-order signed distance (mm) to the ellipse (s/a)² + (t/b)² = 1."""
    q = np.sqrt((s / a) ** 2 + (t / b) ** 2) + 1e-9
    g = np.sqrt((s / a**2) ** 2 + (t / b**2) ** 2) / q + 1e-9
    return (q - 1.0) / g


def _smooth_fields(rng: np.random.Generator, n: int, size: int, sigma_px: float) -> np.ndarray:
    """``n`` Gaussian-filtered white-noise fields [n, size, size] with unit std (FFT filter)."""
    w = rng.standard_normal((n, size, size)).astype(np.float32)
    out = _gauss_fft(w, sigma_px)
    out /= out.reshape(n, -1).std(axis=1)[:, None, None] + 1e-8
    return out


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px < 0.2:
        return img
    return _gauss_fft(img, sigma_px)


def _gauss_fft(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Periodic Gaussian filter (sigma in pixels) over the last two axes, float32 FFT."""
    h, w = img.shape[-2:]
    f = sfft.rfft2(img, workers=1)
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    f *= np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (kx**2 + ky**2)).astype(np.float32)
    return sfft.irfft2(f, s=(h, w), workers=1).astype(np.float32, copy=False)


_CROSS = np.zeros((3, 3, 3), bool)
_CROSS[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # ndimage.generate_binary_structure(2, 1): 4-connectivity


def _largest_component(m: np.ndarray) -> np.ndarray:
    """Keep, in each slice of the [B, H, W] stack, only the largest 4-connected component."""
    lab, n = ndimage.label(m, structure=_CROSS)
    if n == 0:
        return m
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    slice_of = np.array([sl[0].start for sl in ndimage.find_objects(lab)])
    order = np.argsort(-sizes, kind="stable")
    _, first = np.unique(slice_of[order], return_index=True)
    keep = np.zeros(n + 1, bool)
    keep[order[first] + 1] = True
    return keep[lab]
