"""One shape for every reported number, and the intervals behind it (docs/design.md § 8).

Every estimate in report.json is ``{"value": x, "ci": [lo, hi], "n": count, "unit": "patient"|"slice"}``;
a stage or metric not computed is ``{"status": "skipped", "reason": ...}`` — never a number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._lazy import LazyModule

stats = LazyModule("scipy.stats")  # imported on first use: the CLI starts without SciPy

UNITS = ("patient", "slice")


@dataclass(frozen=True)
class Estimate:
    value: float
    ci: tuple[float, float] | None
    n: int
    unit: str
    method: str | None = None  # how the CI was computed ("wilson", "patient-bootstrap", ...)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")

    def to_dict(self) -> dict:
        d = {
            "value": _clean(self.value),
            "ci": None if self.ci is None else [_clean(self.ci[0]), _clean(self.ci[1])],
            "n": int(self.n),
            "unit": self.unit,
        }
        if self.method:
            d["ci_method"] = self.method
        return d


def _clean(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def skipped(reason: str) -> dict:
    """The report entry of a metric or stage that was not computed."""
    return {"status": "skipped", "reason": str(reason)}


def is_skipped(entry) -> bool:
    return isinstance(entry, dict) and entry.get("status") == "skipped"


def wilson_ci(k: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n."""
    if n <= 0:
        return (0.0, 1.0)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the exact ends at k = 0 and k = n (the formula leaves ~1e-18 of rounding there)
    return (0.0 if k <= 0 else max(0.0, centre - half), 1.0 if k >= n else min(1.0, centre + half))


def rate_estimate(k: int, n: int, *, unit: str, confidence: float = 0.95) -> Estimate:
    return Estimate(
        value=(k / n if n else float("nan")), ci=wilson_ci(k, n, confidence=confidence), n=n, unit=unit, method="wilson"
    )


def patient_bootstrap(
    statistic: Callable[[np.ndarray], float],
    groups: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int,
    confidence: float = 0.95,
    strata: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI resampling *patients* (groups), not slices.

    ``statistic(idx)`` receives slice indices of a resample (patients drawn with
    replacement, all their slices included) and returns a number. ``strata`` (per slice,
    e.g. member / non-member) resamples patients within each stratum so both stay present.
    """
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    strata = np.zeros(len(groups), dtype=int) if strata is None else np.asarray(strata)
    members_of: dict = {}
    for i, (g, s) in enumerate(zip(groups, strata)):
        members_of.setdefault((s, g), []).append(i)
    by_stratum: dict = {}
    for (s, g), idx in members_of.items():
        by_stratum.setdefault(s, []).append(np.asarray(idx))
    vals = []
    for _ in range(n_resamples):
        parts = []
        for s, plist in by_stratum.items():
            pick = rng.integers(0, len(plist), size=len(plist))
            parts.extend(plist[j] for j in pick)
        v = statistic(np.concatenate(parts))
        if v is not None and np.isfinite(v):
            vals.append(v)
    if not vals:
        return (float("nan"), float("nan"))
    a = (1 - confidence) / 2
    return (float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a)))


def bootstrap_mean_ci(sums: np.ndarray, counts: np.ndarray, *, seed: int, n_resamples: int = 1000,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Percentile CI of a slice mean under resampling of patients (vectorised patient bootstrap).

    ``sums`` / ``counts``: per patient, the sum of slice values and the number of slices
    (one value per patient: counts all 1). Same statistic as
    :func:`patient_bootstrap` with ``mean`` over the resampled slices.
    """
    sums, counts = np.asarray(sums, float), np.asarray(counts, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sums), size=(n_resamples, len(sums)))
    stats = sums[idx].sum(1) / counts[idx].sum(1)
    a = (1 - confidence) / 2
    return float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))


# ---------------------------------------------------------------- sample sizes (cmraudit plan and the gate's hints)
def auc_half_width(n_members: int, n_nonmembers: int, *, confidence: float = 0.95) -> float:
    """Half-width of a chance-level AUC's CI with these many patients (Mann–Whitney variance under H0)."""
    n1, n0 = max(1, int(n_members)), max(1, int(n_nonmembers))
    se = math.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))
    return float(stats.norm.ppf(0.5 + confidence / 2) * se)


def auc_pass_bound(n_members: int, n_nonmembers: int, *, confidence: float = 0.95, power: float = 0.95) -> float:
    """The AUC budget a chance-level attack's CI upper bound stays under with probability ``power``:
    0.5 + (z_conf + z_power) · SE. A budget below it makes the ``mia_auc`` rule undecidable at these sizes."""
    z = float(stats.norm.ppf(0.5 + confidence / 2)) + float(stats.norm.ppf(power))
    return 0.5 + z * auc_half_width(n_members, n_nonmembers, confidence=confidence) / float(
        stats.norm.ppf(0.5 + confidence / 2)
    )


def auc_patients_needed(n_members: int, n_nonmembers: int, budget: float, **kw) -> tuple[int, int] | None:
    """The smallest multiple of (members, non-members) at which ``mia_auc <= budget`` becomes decidable."""
    for k in range(1, 1001):
        if auc_pass_bound(n_members * k, n_nonmembers * k, **kw) <= budget:
            return n_members * k, n_nonmembers * k
    return None


def synthetic_needed(budget: float, *, recall_lower: float = 1.0, confidence: float = 0.95) -> int | None:
    """Smallest synthetic-set size at which zero flags give a copy-rate upper bound ≤ ``budget``; None where no size
    a computer can hold does (a budget of 0, or one so small that the size overflows: 1e-310)."""
    b = float(budget) * float(recall_lower)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    need = z * z * (1 - b) / b - 1e-9 if b > 0 else math.inf
    return int(math.ceil(need)) if need < 1e18 else None
