"""Calibration statistics of the feature-space copy detection (:mod:`cmraudit.privacy.copies`, docs/design.md § 6).

The calibrated threshold τ (k-th smallest holdout→train distance), the conformal upper bounds on its
false-flag rate (per slice and per patient), and the flagged shares corrected for those false flags.
:mod:`cmraudit.privacy.copies` re-exports them.
"""
from __future__ import annotations

import numpy as np

from ..estimates import Estimate


def corrected_rate(flagged: Estimate, fpr_point: float, fpr_upper: float | None = None) -> Estimate:
    """Copy rate corrected for false positives (Rogan–Gladen with sensitivity 1).

    The flagged share p overstates the copy share by the false-positive rate f of novel images.
    Point: max(0, (p − f)/(1 − f)) with f = ``fpr_point`` (the expected FPR of the calibrated
    threshold, k/(n+1)). CI: [(lo − f_u)/(1 − f_u), hi] from the Wilson interval [lo, hi], where
    f_u = ``fpr_upper`` (upper quantile of the threshold's FPR, default f) — the lower end assumes
    a false-positive rate at its upper bound, the upper end a rate of 0; clipped to [0, 1].
    """
    f = float(fpr_point)
    fu = f if fpr_upper is None else float(fpr_upper)
    lo, hi = flagged.ci
    adj = lambda p, g: min(1.0, max(0.0, (p - g) / (1 - g)))  # noqa: E731
    return Estimate(
        value=adj(flagged.value, f),
        ci=(adj(lo, fu), hi),
        n=flagged.n,
        unit=flagged.unit,
        method="wilson, fpr-corrected",
    )


def corrected_patients(
    hit: Estimate, copy_rate: Estimate, *, n_synthetic: int, fpr_point: float, fpr_upper: float
) -> Estimate:
    """Share of training patients copied, corrected for false flags like :func:`corrected_rate`.

    False flags fall only on the non-copies, n_synthetic · (1 − c) · f of them with c the (corrected)
    copy rate, and each lands on at most one training patient: point p − n(1 − c)f/N; the CI's lower
    end uses f at ``fpr_upper`` and c at its lower end; the upper end is unchanged (no false flags).
    N = training patients (``hit.n``).
    """
    n_pat = max(1, int(hit.n))
    adj = lambda p, c, f: min(1.0, max(0.0, p - n_synthetic * (1 - c) * float(f) / n_pat))  # noqa: E731
    return Estimate(
        value=adj(hit.value, copy_rate.value, fpr_point),
        ci=(adj(hit.ci[0], copy_rate.ci[0], fpr_upper), hit.ci[1]),
        n=hit.n,
        unit=hit.unit,
        method="wilson, fpr-corrected",
    )


def fpr_upper_bound(k: int, n: int, *, confidence: float = 0.95) -> float:
    """Upper ``confidence`` quantile of the FPR of a threshold at the k-th smallest of n calibration
    distances: under exchangeability that FPR is Beta(k, n + 1 − k) distributed (conformal result)."""
    from scipy.stats import beta

    return float(beta.ppf(confidence, k, n + 1 - k))


def patient_fpr_upper_bound(
    holdout_d1: np.ndarray, holdout_patients: np.ndarray, tau: float, *, confidence: float = 0.95
) -> tuple[float, int, int]:
    """Upper bound on the false-flag rate at ``tau`` when slices come in patient clusters.

    Slices of one patient are not exchangeable with each other, patients are: a novel patient who
    happens to resemble a training patient (a near-twin, a sibling, a re-scan under a new ID) brings
    many flagged slices at once, so the slice-level conformal bound is too optimistic (measured on
    the phantom: 400 slices of 100 novel patients, α = 1e-3, 2 % flagged, all from two patients).
    Here the unit is the patient: k of the n holdout patients have a slice at or below ``tau``, and a
    novel patient has any slice flagged with probability ≤ the Beta(k, n + 1 − k) upper quantile —
    which also bounds the share of a novel patient's slices that are flagged. Returns (bound, k, n).
    """
    pats = np.asarray(holdout_patients).astype(str)
    uniq, inv = np.unique(pats, return_inverse=True)
    per_patient = np.full(len(uniq), np.inf)
    np.minimum.at(per_patient, inv, np.asarray(holdout_d1, dtype=np.float64))
    k = max(1, int((per_patient <= tau).sum()))
    return fpr_upper_bound(k, len(uniq), confidence=confidence), k, int(len(uniq))


def calibrated_threshold(holdout_d1: np.ndarray, *, alpha: float) -> tuple[float, float]:
    """(τ, alpha_effective): k-th smallest holdout→train distance, k = max(1, ⌊α(n+1)⌋)."""
    d = np.sort(np.asarray(holdout_d1, dtype=np.float64))
    n = len(d)
    k = max(1, int(np.floor(alpha * (n + 1))))
    return float(d[k - 1]), k / (n + 1)
