"""The null distribution of copy distances, fitted per patient, and the statistics built on it.

Why a parametric tail: with ~20 holdout patients an order-statistic (conformal) bound on the
false-flag rate cannot go below Beta(1, 20)'s 95 % quantile, 0.139, which makes every copy-rate
interval start at 0. The nearest-neighbour residual of a novel slice is a minimum over many
training slices, and minima follow the Weibull law (extreme-value theory for minima), so its lower
tail is fitted by a Weibull on the lower half of the null sample (a right-censored maximum
likelihood fit: the body of the distribution does not steer the tail). The null sample pools
holdout→train residuals and leave-one-patient-out train→train residuals (each training patient
against the other N − 1), so ~N + M patients inform the tail; the false-flag estimate is scaled
by N / (N − 1) for the smaller reference set of the leave-one-out part (conservative). Its
uncertainty is a patient bootstrap (patients resampled with replacement, the fit repeated).
Coverage of the resulting intervals is shown by simulation over seeds (bench/bench_copy_sweep.py,
docs/privacy.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _weibull_censored_fit(logx: np.ndarray, w: np.ndarray, log_c: float, w_cens: np.ndarray):
    """Weighted right-censored Weibull MLE, vectorised over replicates.

    ``logx`` [n] log observations at or below the censoring point exp(``log_c``); ``w`` [B, n] their
    weights; ``w_cens`` [B] the weight of observations censored at c. Returns (shape k [B], log scale [B]).
    The profile equation in k is monotone, solved by bisection on log k.
    """
    w = np.atleast_2d(w)
    w_cens = np.atleast_1d(w_cens).astype(np.float64)
    n_unc = w.sum(1)
    mean_log = (w * logx).sum(1) / np.maximum(n_unc, 1e-12)
    top = max(float(logx.max()), log_c)

    def parts(k):
        e = np.exp(k[:, None] * (logx[None] - top)) * w  # x^k scaled by c0^k
        ec = w_cens * np.exp(k * (log_c - top))
        s0 = e.sum(1) + ec
        s1 = (e * logx[None]).sum(1) + ec * log_c
        return s0, s1

    lo, hi = np.full(len(w), np.log(0.05)), np.full(len(w), np.log(200.0))
    for _ in range(60):
        mid = (lo + hi) / 2
        k = np.exp(mid)
        s0, s1 = parts(k)
        g = 1 / k + mean_log - s1 / s0
        lo = np.where(g > 0, mid, lo)
        hi = np.where(g > 0, hi, mid)
    k = np.exp((lo + hi) / 2)
    s0, _ = parts(k)
    log_lam = (np.log(s0 / np.maximum(n_unc, 1e-12)) + k * top) / k  # λ^k = Σ x^k / n_uncensored
    return k, log_lam


@dataclass(frozen=True)
class NullTail:
    """Fitted lower tail of the null residuals: ``cdf(x)`` and its patient-bootstrap upper bound."""

    shape: float
    log_scale: float
    boot_shape: np.ndarray
    boot_log_scale: np.ndarray
    n_slices: int
    n_patients: int
    reference_correction: float
    confidence: float
    censor_quantile: float
    minimum: float

    def cdf(self, x: float) -> float:
        return float(min(1.0, self.reference_correction * _cdf(x, self.shape, self.log_scale)))

    def cdf_upper(self, x: float) -> float:
        v = _cdf(x, self.boot_shape, self.boot_log_scale)
        return float(min(1.0, self.reference_correction * np.quantile(v, self.confidence)))

    def quantile_upper(self, alpha: float) -> float:
        """Largest x whose bootstrap-upper false-flag rate is still ≤ ``alpha`` (bisection in log x)."""
        lo, hi = np.log(max(self.minimum, 1e-12)) - 30.0, np.log(max(self.minimum, 1e-12)) + 5.0
        for _ in range(80):
            mid = (lo + hi) / 2
            if self.cdf_upper(float(np.exp(mid))) <= alpha:
                lo = mid
            else:
                hi = mid
        return float(np.exp(lo))

    def to_dict(self) -> dict:
        return {
            "model": f"Weibull, right-censored at the null sample's {self.censor_quantile:g} quantile",
            "shape": round(self.shape, 4),
            "scale": float(np.exp(self.log_scale)),
            "n_slices": self.n_slices,
            "n_patients": self.n_patients,
            "reference_correction": round(self.reference_correction, 4),
            "bootstrap": len(self.boot_shape),
            "null_minimum": self.minimum,
        }


def _cdf(x, k, log_lam):
    x = max(float(x), 1e-300)
    z = np.exp(np.clip(np.asarray(k) * (np.log(x) - np.asarray(log_lam)), -700, 700))
    return -np.expm1(-z)


def fit_null_tail(values: np.ndarray, patients: np.ndarray, *, n_train_patients: int, seed: int, n_boot: int = 400,
                  censor_quantile: float = 0.5, confidence: float = 0.95) -> NullTail:
    """Fit :class:`NullTail` to null residuals ``values`` (one per slice) grouped by ``patients``."""
    x = np.asarray(values, dtype=np.float64)
    pats = np.asarray(patients).astype(str)
    ok = np.isfinite(x) & (x > 0)
    x, pats = x[ok], pats[ok]
    if len(x) < 10:
        raise ValueError(f"the null sample has {len(x)} usable residuals; at least 10 are needed")
    c = float(np.quantile(x, censor_quantile))
    unc = x <= c
    logx = np.log(x[unc])
    uniq, inv = np.unique(pats, return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(uniq), np.full(len(uniq), 1 / len(uniq)), size=n_boot).astype(np.float64)  # [B, P]
    weights = np.vstack([np.ones(len(uniq)), counts])  # replicate 0 = the sample itself
    w_slice = weights[:, inv]  # [B+1, n]
    k, log_lam = _weibull_censored_fit(logx, w_slice[:, unc], np.log(c), w_slice[:, ~unc].sum(1))
    corr = n_train_patients / max(1, n_train_patients - 1)
    return NullTail(shape=float(k[0]), log_scale=float(log_lam[0]), boot_shape=k[1:], boot_log_scale=log_lam[1:],
                    n_slices=int(len(x)), n_patients=int(len(uniq)), reference_correction=float(corr),
                    confidence=confidence, censor_quantile=censor_quantile, minimum=float(x.min()))
