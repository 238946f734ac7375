"""Paired image metrics: a synthetic image generated from a real test mask vs that real image.

All images are on the dataset scale [-1, 1], so ``data_range`` = 2 is passed explicitly.

- **PSNR** (dB) = 10·log10(data_range² / MSE), per slice; identical slices are capped at 100 dB.
- **SSIM** (Wang et al. 2004): Gaussian window 11 px, σ = 1.5, K1 = 0.01, K2 = 0.03, valid
  convolution, mean over the map; per slice.
- **MS-SSIM** (Wang et al. 2003) with scales chosen so the coarsest scale still holds the
  window: window 7 px (σ = 1.0 at 64², 1.5 at ≥ 128²), ``n_scales`` = largest S ≤ 5 with
  min(H, W) / 2^(S−1) ≥ 2·window, i.e. 3 scales at 64², 4 at 128², 5 at ≥ 224²; the first S
  standard weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) renormalised to sum 1. Negative
  contrast-structure terms are clamped at 0 (so the product is defined). The default
  5-scale / 11-px MS-SSIM rejects images ≤ 160 px.
- **LPIPS** (Zhang et al. 2018) through the ``lpips`` package only when the torchvision
  backbone weights exist locally (see :mod:`cmraudit.fidelity.lpips_local`); else skipped.
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
DATA_RANGE = 2.0  # images live in [-1, 1]


def _torch():
    import torch

    return torch


def _gauss_window(size: int, sigma: float):
    torch = _torch()
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _ssim_terms(x, y, win, data_range: float, k1: float = 0.01, k2: float = 0.03):
    F = _torch().nn.functional
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, win), F.conv2d(y, win)
    sxx = F.conv2d(x * x, win) - mu_x**2
    syy = F.conv2d(y * y, win) - mu_y**2
    sxy = F.conv2d(x * y, win) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def _prep(a, b, name: str):
    torch = _torch()
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)  # float32: fast CPU convolutions
    if a.shape != b.shape or a.ndim != 3:
        raise UsageError(f"{name} needs two image stacks [N, H, W] of one shape, got {a.shape} and {b.shape}")
    return torch.from_numpy(a)[:, None], torch.from_numpy(b)[:, None]


def compute_psnr(x: np.ndarray, y: np.ndarray, *, data_range: float = DATA_RANGE) -> np.ndarray:
    """Per-slice PSNR in dB (identical slices capped at 100 dB)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise UsageError(f"PSNR needs stacks of one shape, got {x.shape} and {y.shape}")
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(1)
    with np.errstate(divide="ignore"):
        psnr = 10 * np.log10(data_range**2 / mse)
    return np.minimum(psnr, 100.0)


def compute_ssim(
    x: np.ndarray, y: np.ndarray, *, data_range: float = DATA_RANGE, win_size: int = 11, sigma: float = 1.5
) -> np.ndarray:
    """Per-slice SSIM in [-1, 1] (1 = identical)."""
    a, b = _prep(x, y, "SSIM")
    if min(a.shape[-2:]) < win_size:
        raise UsageError(
            f"SSIM window {win_size} px does not fit {tuple(a.shape[-2:])} images; pass a smaller win_size"
        )
    ssim, _ = _ssim_terms(a, b, _gauss_window(win_size, sigma), data_range)
    return ssim.double().numpy()


def ms_ssim_scales(h: int, w: int, *, win_size: int = 7) -> int:
    """Number of MS-SSIM scales valid at H×W: the coarsest scale keeps ≥ 2 windows per side."""
    s = 1
    while s < len(MS_SSIM_WEIGHTS) and min(h, w) / 2**s >= 2 * win_size:
        s += 1
    return s


def compute_ms_ssim(x: np.ndarray, y: np.ndarray, *, data_range: float = DATA_RANGE, win_size: int = 7,
                    sigma: float | None = None, n_scales: int | None = None) -> np.ndarray:
    """Per-slice MS-SSIM in [0, 1] with scales valid at the image size (see module doc)."""
    torch = _torch()
    F = torch.nn.functional
    a, b = _prep(x, y, "MS-SSIM")
    h, w = a.shape[-2:]
    s = n_scales or ms_ssim_scales(h, w, win_size=win_size)
    if min(h, w) / 2 ** (s - 1) < win_size:
        raise UsageError(
            f"MS-SSIM with {s} scales and a {win_size}-px window needs images ≥ {win_size * 2 ** (s - 1)} px, got "
            f"{h}x{w}"
        )
    sigma = sigma if sigma is not None else (1.0 if min(h, w) < 128 else 1.5)
    win = _gauss_window(win_size, sigma)
    wts = torch.tensor(MS_SSIM_WEIGHTS[:s], dtype=torch.float32)
    wts = wts / wts.sum()
    vals = []
    for i in range(s):
        ssim, cs = _ssim_terms(a, b, win, data_range)
        vals.append(torch.relu(ssim if i == s - 1 else cs))
        if i < s - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    stack = torch.stack(vals, 1)  # [N, S]
    return torch.prod(stack ** wts[None], 1).double().numpy()
