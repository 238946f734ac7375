"""Fréchet distance between two Gaussians fitted to feature sets (float64, eigenvalue based).

FD = ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2·tr((Σ₁^½ Σ₂ Σ₁^½)^½).

The matrix square root is taken through symmetric eigendecompositions (``numpy.linalg.eigh``)
in float64, never ``scipy.linalg.sqrtm`` (deprecated ``disp`` argument, complex round-off).
Tiny negative eigenvalues from round-off are clipped to zero.

Assumptions: the number is in squared feature units; it is **biased upward at small N**
(same distribution, 512-d: ≈780 at N = 50, ≈132 at N = 1000) and depends on the feature
space, so only compare FDs computed at equal N on the same features. On Inception features
(real weights) it is FID; on any other space it is *not* FID and is named after the space.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class GaussianStats:
    """Mean [D] and covariance [D, D] (float64) of a feature set, with its size."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise UsageError(f"{name} must be a 2-D array [N, D] of features, got shape {x.shape}")
    if len(x) < 2:
        raise UsageError(f"{name} needs at least 2 feature vectors for a covariance, got {len(x)}")
    if not np.isfinite(x).all():
        raise UsageError(f"{name} contains NaN or Inf features; fix the feature extractor or drop those rows")
    return x


def gaussian_stats(features: np.ndarray, *, name: str = "features") -> GaussianStats:
    """Sample mean and unbiased covariance (ddof = 1) in float64."""
    x = _as_2d(features, name)
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc / (len(x) - 1)
    return GaussianStats(mu=mu, sigma=sigma, n=len(x))


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    w = np.sqrt(np.clip(w, 0.0, None))
    return (v * w) @ v.T


def frechet_distance_from_stats(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance between N(a.mu, a.sigma) and N(b.mu, b.sigma) (float64)."""
    if a.mu.shape != b.mu.shape:
        raise UsageError(f"feature dimensions differ: {a.mu.shape[0]} vs {b.mu.shape[0]}")
    diff = a.mu - b.mu
    s1h = _sqrt_psd(a.sigma)
    m = s1h @ b.sigma @ s1h
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(ev, 0.0, None)).sum())
    fd = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr_covmean)
    return max(fd, 0.0)


def compute_frechet_distance(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to ``real`` [N, D] and ``synthetic`` [M, D] features."""
    return frechet_distance_from_stats(gaussian_stats(real, name="real"), gaussian_stats(synthetic, name="synthetic"))
