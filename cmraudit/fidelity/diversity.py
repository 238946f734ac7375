"""Diversity: mean pairwise MS-SSIM within a set (lower = more diverse), synthetic vs real.

``n_pairs`` random pairs of distinct slices are drawn (seeded) within each set and their
MS-SSIM (scales valid at the image size, data_range 2, see :mod:`.paired`) averaged. A
generator that collapses onto few modes has a *higher* within-set MS-SSIM than the real data;
one that outputs noise a lower one. The interval is a normal 95 % interval over pairs
(unit slice, n = number of pairs).
"""
from __future__ import annotations

import numpy as np

from ..estimates import Estimate, skipped
from .paired import compute_ms_ssim


def pairwise_ms_ssim(images: np.ndarray, *, n_pairs: int = 500, seed: int) -> np.ndarray:
    """MS-SSIM of ``n_pairs`` random pairs of distinct slices of ``images`` [N, H, W]."""
    n = len(images)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n  # j != i
    return compute_ms_ssim(np.asarray(images)[i], np.asarray(images)[j])


def _estimate(v: np.ndarray) -> Estimate:
    m = float(v.mean())
    half = 1.96 * float(v.std(ddof=1)) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return Estimate(value=m, ci=(m - half, m + half), n=len(v), unit="slice", method="normal")


def evaluate_diversity(*, real, synthetic, n_pairs: int = 500, seed: int) -> dict:
    """The report's ``diversity`` block: mean pairwise MS-SSIM among synthetic and among real."""
    if len(real) < 2 or len(synthetic) < 2:
        return skipped(f"diversity needs ≥ 2 slices per set, got {len(real)} real and {len(synthetic)} synthetic")
    s = pairwise_ms_ssim(synthetic.images, n_pairs=n_pairs, seed=seed)
    r = pairwise_ms_ssim(real.images, n_pairs=n_pairs, seed=seed + 1)
    return {
        "mean_pairwise_ms_ssim": {"synthetic": _estimate(s).to_dict(), "real": _estimate(r).to_dict()},
        "ratio_synthetic_to_real": float(s.mean() / r.mean()) if r.mean() > 0 else None,
    }
