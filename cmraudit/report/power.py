"""Why a gate rule cannot pass at this size: the "underpowered" hints of the gate (sizes from the formulas in
:mod:`cmraudit.estimates`, shared with ``cmraudit plan``)."""
from __future__ import annotations

from ..estimates import auc_pass_bound, auc_patients_needed, synthetic_needed, wilson_ci


def wilson_min_n(budget: float, *, confidence: float = 0.95) -> int | None:
    """Smallest n at which 0 events out of n gives a Wilson upper bound <= ``budget``.

    The Wilson upper bound of 0/n is z²/(n + z²), so n >= z²(1 − b)/b (:func:`cmraudit.estimates.synthetic_needed`
    with perfect recall).
    """
    return synthetic_needed(budget, confidence=confidence)


def _power_hint(rule: str, est: dict, budget: float, *, report: dict | None = None,
                where: str | None = None) -> str | None:
    """Say so when even a perfect result could not pass at this size, and what size would (see cmraudit.plan)."""
    n, unit = est.get("n"), est.get("unit") or "item"
    if rule == "mia_auc":
        sizes = _mia_sizes(report) if ".slice." not in str(where) else None  # the sizes are patient counts
        if sizes is None or not 0.5 < budget < 1:
            return None
        n1, n0 = sizes
        bound = auc_pass_bound(n1, n0)
        if bound <= budget:
            return None
        need = auc_patients_needed(n1, n0, budget)
        more = "" if need is None else f"; about {need[0]} / {need[1]} patients are needed (cmraudit plan)"
        return (f"underpowered: with {n1} member and {n0} non-member patients even a chance-level attack passes this "
                f"budget with less than 95 % probability (it needs a budget of at least {bound:.3g}){more}")
    method = str(est.get("ci_method") or "")
    if not method.startswith("wilson") or not isinstance(n, int) or n <= 0 or not 0 < budget < 1:
        return None
    recall_lo = _recall_lower(report, where)
    zero_upper = wilson_ci(0, n)[1] / recall_lo
    if zero_upper <= budget:
        return None
    what = "copied patients" if rule == "patients_copied" else "copies"
    need = synthetic_needed(budget, recall_lower=recall_lo) if rule == "copy_rate" else wilson_min_n(budget)
    return (f"underpowered: with n = {n} {unit}s even zero {what} give a CI upper bound of {zero_upper:.3g} > "
            f"{budget:g}; "
            + (f"at least {need} {unit}s are needed for this budget" if need is not None
               else "no set size reaches a budget this small"))


def _recall_lower(report: dict | None, where: str | None) -> float:
    try:
        parts = where.split(".")[:4]  # privacy.feature_spaces.<space>.copy_detection
        node = report
        for p in parts:
            node = node[p]
        r = node.get("recall")
        return float(r["ci"][0]) if isinstance(r, dict) and r.get("ci") and r["ci"][0] > 0 else 1.0
    except (AttributeError, KeyError, TypeError, ValueError):
        return 1.0


def _mia_sizes(report: dict | None) -> tuple[int, int] | None:
    try:
        d = report["privacy"]["data"]
        return int(d["train"]["patients"]), int(d["holdout"]["patients"])
    except (KeyError, TypeError, ValueError):
        return None


_TPR_HINT = ("underpowered: TPR at 1 % FPR needs at least 100 non-member (holdout) patients; audit a larger holdout, "
             "or set mia_tpr_at_1pct_fpr = false in a policy for pilot runs (docs/concepts.md#gate)")
