"""Scoring a membership-inference attack: AUC, TPR at low FPR, advantage, patient-bootstrap CIs.

Conventions (stated in the report and docs/privacy.md):

- a higher score means "more likely a member"; members are the target's training patients,
  non-members its holdout patients;
- ``tpr_at_1pct_fpr`` / ``tpr_at_0_1pct_fpr``: TPR at the last ROC point whose FPR ≤ 1 % / 0.1 %;
  reported as skipped ("unsupported") when there are fewer than 1/FPR non-members, because the
  smallest non-zero FPR is then larger than the target FPR;
- ``advantage``: TPR − FPR at a threshold chosen on the *other* half of the patients
  (2-fold cross-fit, folds stratified by membership), averaged over both directions — an
  honest advantage, unlike max |TPR − FPR| fitted on the evaluation labels;
- CIs: percentile bootstrap over patients (within member / non-member strata), 1000 resamples
  by default; the slice level keeps all slices of a drawn patient;
- the patient level aggregates a patient's slice scores by their mean.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...cpu import map_chunks
from ...estimates import Estimate, skipped

FPR_TARGETS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0_1pct_fpr": 0.001}


def _sorted_view(scores: np.ndarray):
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # last position of each tie block
    return order, last


def _roc_from_weights(pos_w, neg_w, last):
    tp = np.cumsum(pos_w)[last]
    fp = np.cumsum(neg_w)[last]
    P, N = tp[-1], fp[-1]
    if P <= 0 or N <= 0:
        return None, None
    tpr = np.r_[0.0, tp / P]
    fpr = np.r_[0.0, fp / N]
    return fpr, tpr


def _auc(fpr, tpr) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _tpr_at(fpr, tpr, x: float) -> float:
    i = np.searchsorted(fpr, x + 1e-12, side="right") - 1
    return float(tpr[max(i, 0)])


def roc_metrics(scores: np.ndarray, member: np.ndarray) -> dict:
    """AUC and TPR at 1 % / 0.1 % FPR of one score vector (no CI)."""
    scores = np.asarray(scores, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    order, last = _sorted_view(scores)
    fpr, tpr = _roc_from_weights(member[order].astype(float), (~member[order]).astype(float), last)
    if fpr is None:
        return {"auc": float("nan"), "fpr": np.array([0.0, 1.0]), "tpr": np.array([0.0, 1.0])}
    out = {"auc": _auc(fpr, tpr), "fpr": fpr, "tpr": tpr}
    for k, x in FPR_TARGETS.items():
        out[k] = _tpr_at(fpr, tpr, x)
    return out


def downsample_roc(fpr: np.ndarray, tpr: np.ndarray, *, max_points: int = 200) -> dict:
    """≤ max_points ROC points, denser at low FPR (log grid) so low-FPR curves stay readable."""
    if len(fpr) <= max_points:
        return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}
    half = max_points // 2 - 1
    grid = np.unique(np.r_[0.0, np.logspace(-4, 0, half), np.linspace(0, 1, half), 1.0])
    idx = np.searchsorted(fpr, grid, side="right") - 1
    idx = np.unique(np.clip(np.r_[0, idx, len(fpr) - 1], 0, len(fpr) - 1))[:max_points]
    return {"fpr": [float(fpr[i]) for i in idx], "tpr": [float(tpr[i]) for i in idx]}


def _crossfit_folds(groups: np.ndarray, member: np.ndarray, seed: int) -> np.ndarray:
    """Fold (0/1) per slice: patients split in halves within member and non-member strata."""
    rng = np.random.default_rng(seed + 7)
    fold = np.zeros(len(groups), dtype=int)
    for m in (True, False):
        pats = np.unique(groups[member == m])
        rng.shuffle(pats)
        f1 = set(pats[: len(pats) // 2].tolist())
        sel = member == m
        fold[sel] = [1 if g in f1 else 0 for g in groups[sel]]
    return fold


def _best_threshold(scores, member) -> float:
    r = roc_metrics(scores, member)
    if not np.isfinite(r["auc"]):
        return float("inf")
    s = np.sort(np.unique(scores))[::-1]
    # thresholds: score >= s[j] predicted member, j indexes ROC points 1..
    j = int(np.argmax(r["tpr"][1:] - r["fpr"][1:]))
    return float(s[j])


@dataclass
class LevelResult:
    """Metrics of one attack at one level (slice or patient)."""

    unit: str
    n_member: int
    n_nonmember: int
    auc: Estimate
    tpr: dict  # key -> Estimate | skipped dict
    advantage: Estimate
    roc: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"auc": self.auc.to_dict()}
        for k in FPR_TARGETS:
            v = self.tpr[k]
            d[k] = v.to_dict() if isinstance(v, Estimate) else v
        d["advantage"] = self.advantage.to_dict()
        d["roc"] = self.roc
        d["n_member"] = self.n_member
        d["n_nonmember"] = self.n_nonmember
        return d


def evaluate_level(
    scores: np.ndarray,
    member: np.ndarray,
    groups: np.ndarray,
    *,
    unit: str,
    seed: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    max_roc_points: int = 200,
) -> LevelResult:
    """All metrics with patient-bootstrap CIs. ``groups``: patient id per row."""
    scores = np.asarray(scores, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    groups = np.asarray(groups).astype(str)
    n_pos, n_neg = int(member.sum()), int((~member).sum())
    uniq, code = np.unique(groups, return_inverse=True)
    order, last = _sorted_view(scores)
    m_sorted = member[order]
    code_sorted = code[order]
    base = roc_metrics(scores, member)
    fold = _crossfit_folds(groups, member, seed)
    thr = {}
    for f in (0, 1):
        sel = fold == f
        thr[f] = _best_threshold(scores[sel], member[sel]) if sel.any() else float("inf")
    pred = np.where(fold == 0, scores >= thr[1], scores >= thr[0])  # threshold from the other fold

    def adv_w(w):
        pw, nw = w * member, w * (~member)
        P, N = pw.sum(), nw.sum()
        if P <= 0 or N <= 0:
            return float("nan")
        return float((pw * pred).sum() / P - (nw * pred).sum() / N)

    # patient-bootstrap: weights = number of times each patient is drawn (within strata)
    pat_member = np.zeros(len(uniq), dtype=bool)
    pat_member[code[member]] = True
    strata = [np.flatnonzero(pat_member), np.flatnonzero(~pat_member)]
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_resamples, len(uniq)))
    for r in range(n_resamples):  # the draws first, in order (one RNG stream) ...
        for st in strata:
            if len(st):
                counts[r] += np.bincount(rng.choice(st, size=len(st)), minlength=len(uniq))
    nm_sorted = ~m_sorted

    def resample(sl: slice) -> list:  # ... then the metrics, resample by resample, in chunks on threads
        out = []
        for cnt in counts[sl]:
            w_sorted = cnt[code_sorted]
            fpr, tpr = _roc_from_weights(w_sorted * m_sorted, w_sorted * nm_sorted, last)
            if fpr is not None:
                out.append((_auc(fpr, tpr), *(_tpr_at(fpr, tpr, x) for x in FPR_TARGETS.values()), adv_w(cnt[code])))
        return out

    rows = [r for part in map_chunks(resample, n_resamples, max(1, n_resamples // 8)) for r in part]
    keys = ["auc", *FPR_TARGETS, "adv"]
    boot = {k: [r[i] for r in rows] for i, k in enumerate(keys)}
    a = (1 - confidence) / 2

    def ci(vals):
        vals = np.asarray([v for v in vals if np.isfinite(v)])
        if len(vals) == 0:
            return (float("nan"), float("nan"))
        return (float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a)))

    n = len(scores)
    est = lambda v, key: Estimate(value=v, ci=ci(boot[key]), n=n, unit=unit, method="patient-bootstrap")  # noqa: E731
    tprs = {}
    for k, x in FPR_TARGETS.items():
        need = int(np.ceil(1 / x))
        if n_neg < need:
            tprs[k] = skipped(
                f"unsupported: TPR at {x:g} FPR needs at least {need} non-members, have {n_neg} ({unit} level)"
            )
        else:
            tprs[k] = est(base[k], k)
    return LevelResult(
        unit=unit,
        n_member=n_pos,
        n_nonmember=n_neg,
        auc=est(base["auc"], "auc"),
        tpr=tprs,
        advantage=est(adv_w(np.ones(n)), "adv"),
        roc=downsample_roc(base["fpr"], base["tpr"], max_points=max_roc_points),
    )


def patient_scores(scores: np.ndarray, member: np.ndarray, groups: np.ndarray):
    """Mean slice score per patient → (scores, member, patient ids)."""
    groups = np.asarray(groups).astype(str)
    uniq, code = np.unique(groups, return_inverse=True)
    s = np.bincount(code, weights=np.asarray(scores, float), minlength=len(uniq)) / np.bincount(
        code, minlength=len(uniq)
    )
    m = np.zeros(len(uniq), dtype=bool)
    m[code[np.asarray(member, bool)]] = True
    return s, m, uniq


@dataclass
class AttackResult:
    """One attack at both levels, plus how it was run."""

    name: str
    slice: LevelResult
    patient: LevelResult
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"slice": self.slice.to_dict(), "patient": self.patient.to_dict()}
        if self.info:
            d["info"] = self.info
        return d


def evaluate_attack(
    name: str,
    *,
    scores: np.ndarray,
    member: np.ndarray,
    groups: np.ndarray,
    seed: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    info: dict | None = None,
) -> AttackResult:
    """Evaluate slice scores at the slice level and (mean-aggregated) at the patient level."""
    scores = np.asarray(scores, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    sl = evaluate_level(scores, member, groups, unit="slice", seed=seed, n_resamples=n_resamples, confidence=confidence)
    ps, pm, pid = patient_scores(scores, member, groups)
    pl = evaluate_level(ps, pm, pid, unit="patient", seed=seed + 1, n_resamples=n_resamples, confidence=confidence)
    return AttackResult(name=name, slice=sl, patient=pl, info=dict(info or {}))
