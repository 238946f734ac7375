"""Copy detection and memorisation in one feature space (docs/design.md § 6).

For every synthetic slice: d1, d2 (distances to the nearest and second-nearest *distinct*
training slices), NNDR = d1/d2, the Carlini et al. (2023) ratio d1 / (0.5 · mean distance to
the 50 nearest training slices), and the patient of the nearest training slice.

Calibrated copy threshold (Neyman–Pearson): τ = the k-th smallest holdout→train nearest
distance with k = max(1, ⌊α (n + 1)⌋) over n holdout slices; a synthetic slice is a copy when
d1 < τ. If novel images behave like holdout images (exchangeability), a novel image is
flagged with probability ≤ k/(n+1) (``alpha_effective``; equal to α when n ≥ 1/α − 1).
Holdout slices of one patient are correlated, so the guarantee is approximate.

Augmentation invariance: with ``views="flips"`` the three flipped views of every training
slice are indexed too (and used for holdout calibration alike), so a flipped copy is found at
distance 0; distances are then the minimum over the views. The learned ``domain`` space is
invariant by construction (see cmraudit.features.domain).

The threshold, its false-flag bounds and the corrected rates are computed in :mod:`cmraudit.privacy.copy_stats`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._lazy import LazyModule
from ..estimates import Estimate, rate_estimate, skipped
from ..features.neighbours import APPROX_THRESHOLD, build_index, knn, knn_and_reverse, pruned_neighbours, prunes
from .copy_stats import (  # noqa: F401 - re-exported: the calibration statistics live in copy_stats.py
    calibrated_threshold,
    corrected_patients,
    corrected_rate,
    fpr_upper_bound,
    patient_fpr_upper_bound,
)

stats = LazyModule("scipy.stats")

VIEW_FLIPS = ("identity", "flip_h", "flip_v", "flip_hv")


def flip_views(images: np.ndarray) -> list[np.ndarray]:
    """The 4 flip views of [N, H, W] (identity, horizontal, vertical, both)."""
    x = np.asarray(images)
    return [x, x[:, :, ::-1], x[:, ::-1, :], x[:, ::-1, ::-1]]


@dataclass
class SpaceIndex:
    """Training vectors (possibly several views per slice) and their row → slice map."""

    vectors: np.ndarray  # [V*N, D]
    n: int  # training slices
    views: int

    def row_to_slice(self, rows: np.ndarray) -> np.ndarray:
        return np.where(rows < 0, -1, rows % self.n)


def _distinct_neighbours(query: np.ndarray, index_vecs: SpaceIndex, *, k: int, faiss_index=None):
    """k nearest *distinct* training slices (views collapsed by minimum distance)."""
    kk = min(len(index_vecs.vectors), k * index_vecs.views)
    nb = knn(query, index=faiss_index, k=kk) if faiss_index is not None else knn(query, index_vecs.vectors, k=kk)
    rows = index_vecs.row_to_slice(nb.indices)
    if index_vecs.views == 1:
        return nb.distances[:, :k], rows[:, :k]
    D = np.full((len(query), k), np.inf)
    I = np.full((len(query), k), -1, dtype=np.int64)
    for q in range(len(query)):
        _, first = np.unique(rows[q], return_index=True)
        first = np.sort(first)[:k]
        D[q, : len(first)] = nb.distances[q, first]
        I[q, : len(first)] = rows[q, first]
    return D, I


def informative_columns(*sets: np.ndarray) -> tuple[np.ndarray, ...]:
    """The feature sets without the dimensions that are constant over all of them (they add 0 to every distance)."""
    sets = tuple(np.asarray(x) for x in sets)
    lo = np.min([x.min(0) for x in sets if len(x)], axis=0)
    hi = np.max([x.max(0) for x in sets if len(x)], axis=0)
    keep = hi > lo
    if keep.all() or not keep.any():
        return sets
    return tuple(np.ascontiguousarray(x[:, keep]) for x in sets)


def nearest_in_subset(search, d_syn: np.ndarray, i_syn: np.ndarray, pick: np.ndarray, n_train: int) -> np.ndarray:
    """Distance of each synthetic slice to its nearest training slice among the rows ``pick``.

    Read off the exact k-NN list ``(d_syn, i_syn)`` over all training slices: its first member in ``pick`` is the
    subset's nearest (the list is exact and ascending). Only queries with no member of ``pick`` in their list are
    searched again, against ``pick`` alone. Same distances as searching the subset for every query (ties aside),
    without a second full search when the subset is most of the training set.
    """
    in_pick = np.zeros(n_train, dtype=bool)
    in_pick[np.asarray(pick, dtype=np.int64)] = True
    hit = (i_syn >= 0) & in_pick[np.maximum(i_syn, 0)]
    found = hit.any(1)
    out = np.empty(len(d_syn))
    out[found] = d_syn[found, hit[found].argmax(1)]
    if (~found).any():
        out[~found] = search("synthetic", "train", k=1, rows=np.asarray(pick), query_rows=~found)[0][:, 0]
    return out


@dataclass
class CopyResult:
    """Copy detection + memorisation in one feature space."""

    space: str
    per_slice: dict  # d1, d2, nndr, carlini, nn_index, nn_patient, copy (arrays over synthetic)
    copy_detection: dict
    memorisation: dict
    dcr_histogram: dict
    holdout_d1: np.ndarray = field(repr=False, default=None)

    def to_dict(self) -> dict:
        def conv(v):
            if isinstance(v, Estimate):
                return v.to_dict()
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            return v

        return {
            "copy_detection": conv(self.copy_detection),
            "memorisation": conv(self.memorisation),
            "dcr_histogram": self.dcr_histogram,
        }


def _views_of(feats_fn, images, views: str):
    if views == "flips":
        return np.concatenate([feats_fn(v) for v in flip_views(images)])
    return feats_fn(images)


def detect_copies(
    *,
    train_feats: np.ndarray,
    holdout_feats: np.ndarray,
    synthetic_feats: np.ndarray,
    train_patients: np.ndarray,
    space: str,
    n_views: int = 1,
    reverse: dict | None = None,
    **kwargs,
) -> CopyResult:
    """Copy detection from feature vectors.

    ``train_feats`` has ``n_views`` blocks of N rows (block v = view v of every training slice;
    block 0 the identity). ``holdout_feats`` / ``synthetic_feats`` are single-view.

    Dimensions constant over all three sets add nothing to any distance and are dropped before the search (the
    label-map space at 16² has 258 informative dimensions of 768 on the phantom: a third of the work, same distances).

    ``reverse``: a dict to receive, as by-products of the synthetic → train and synthetic → holdout searches, the
    distance of every training (``"train"``) and holdout (``"holdout"``) slice to its nearest synthetic slice (what
    GAN-Leaks needs): one pass over each distance matrix instead of two searches (single-view spaces only).
    """
    train_feats, holdout_feats, synthetic_feats = informative_columns(train_feats, holdout_feats, synthetic_feats)
    train_feats = np.ascontiguousarray(train_feats, dtype=np.float32)
    n_train = len(train_feats) // n_views
    sidx, fidx = SpaceIndex(vectors=train_feats, n=n_train, views=n_views), build_index(train_feats)
    queries = {"synthetic": synthetic_feats, "holdout": holdout_feats}
    both = {}  # (query, base, k) → the result of a two-way pass, used once
    # one pass for both directions pays where the GEMM dominates (1.6× at 1024-d; none at 64-d); exhaustive, as knn
    two_way = reverse is not None and n_views == 1 and train_feats.shape[1] >= 256 and n_train <= APPROX_THRESHOLD

    def search(query: str, base: str, *, k: int, rows=None, query_rows=None):
        if two_way and query == "synthetic" and rows is None and query_rows is None:
            key = (query, base, k)
            if key not in both:
                fwd, rev = knn_and_reverse(synthetic_feats, holdout_feats if base == "holdout" else train_feats, k=k)
                both[key] = (fwd.distances, fwd.indices)
                reverse[base] = rev.distances[:, 0]
            return both[key]
        q = queries[query] if query_rows is None else queries[query][query_rows]
        if base == "holdout":
            nb = knn(q, holdout_feats, k=k)
            return nb.distances, nb.indices
        if rows is None and n_views == 1 and prunes(q, train_feats, k):  # the certified pruned exact search
            nb = pruned_neighbours(q, train_feats, k)
            return nb.distances, nb.indices
        if rows is None:
            return _distinct_neighbours(q, sidx, k=k, faiss_index=fidx)
        sub = np.concatenate([rows + v * n_train for v in range(n_views)])
        D, I = _distinct_neighbours(q, SpaceIndex(train_feats[sub], len(rows), n_views), k=k)
        return D, np.where(I < 0, -1, np.asarray(rows)[np.maximum(I, 0)])

    return detect_copies_with(search, n_train=n_train, n_holdout=len(holdout_feats), n_synthetic=len(synthetic_feats),
                              train_patients=train_patients, space=space, views=n_views, **kwargs)


def detect_copies_with(
    search,
    *,
    n_train: int,
    n_holdout: int,
    n_synthetic: int,
    train_patients: np.ndarray,
    space: str,
    holdout_patients: np.ndarray | None = None,
    views=1,
    alpha: float = 1e-3,
    carlini_k: int = 50,
    carlini_alpha: float = 0.5,
    legacy_nndr: float = 0.6,
    legacy_gu: float = 1 / 3,
    hist_bins: int = 30,
    seed: int = 0,
    confidence: float = 0.95,
    top_k: int = 12,
) -> CopyResult:
    """Copy detection given a nearest-neighbour function ``search(query, base, k=, rows=, query_rows=)``.

    ``query`` is "synthetic" or "holdout" (optionally only the rows selected by ``query_rows``), ``base`` "train"
    (optionally only training ``rows``) or "holdout"; it returns (distances [Q, k] ascending, training/holdout
    indices [Q, k]).
    With ``holdout_patients`` the calibration and the closer-to-train comparison treat the patient as
    the unit (:func:`patient_fpr_upper_bound`; train subsampled by patients); without, by slices.
    """
    train_patients = np.asarray(train_patients).astype(str)
    k = max(2, min(carlini_k, n_train))
    d_syn, i_syn = search("synthetic", "train", k=k)
    d_hol, _ = search("holdout", "train", k=k)
    d1, d2 = d_syn[:, 0], d_syn[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        nndr = np.where(d2 > 0, d1 / d2, 0.0)
        carlini = np.where(
            np.nanmean(d_syn, 1) > 0,
            d1 / (carlini_alpha * np.nanmean(np.where(np.isfinite(d_syn), d_syn, np.nan), 1)),
            0.0,
        )
        carlini_h = np.where(
            np.nanmean(d_hol, 1) > 0,
            d_hol[:, 0] / (carlini_alpha * np.nanmean(np.where(np.isfinite(d_hol), d_hol, np.nan), 1)),
            0.0,
        )
    tau, alpha_eff = calibrated_threshold(d_hol[:, 0], alpha=alpha)
    n_cal = len(d_hol)
    fpr_hi = fpr_upper_bound(max(1, int(round(alpha_eff * (n_cal + 1)))), n_cal, confidence=confidence)
    fpr_unit, n_cal_patients, k_cal_patients = "slice", None, None
    if holdout_patients is not None:
        fpr_hi_p, k_cal_patients, n_cal_patients = patient_fpr_upper_bound(
            d_hol[:, 0], holdout_patients, tau, confidence=confidence
        )
        fpr_hi, fpr_unit = max(fpr_hi, fpr_hi_p), "patient"
    is_copy = d1 < tau
    nn_index = i_syn[:, 0]
    nn_patient = train_patients[nn_index]
    n_syn = len(d1)
    uniq_train = np.unique(train_patients)
    copied = np.unique(nn_patient[is_copy])
    flagged = rate_estimate(int(is_copy.sum()), n_syn, unit="slice", confidence=confidence)
    copy_rate = corrected_rate(flagged, alpha_eff, fpr_hi)
    patients_copied = corrected_patients(
        rate_estimate(len(copied), len(uniq_train), unit="patient", confidence=confidence),
        copy_rate,
        n_synthetic=n_syn,
        fpr_point=alpha_eff,
        fpr_upper=fpr_hi,
    )

    # closer-to-train share (SDMetrics DCR overfitting protection): train subsampled to the holdout's size — by
    # patients when known (a slice subsample spreads over more patients than the holdout has, so novel images
    # would land closer to it: measured 60 % "closer to train" for novel patients with a slice subsample)
    rng = np.random.default_rng(seed)
    n_h = n_holdout
    if holdout_patients is not None:
        t_uniq = np.unique(train_patients)
        n_hp = len(np.unique(np.asarray(holdout_patients).astype(str)))
        keep = rng.choice(t_uniq, size=min(len(t_uniq), n_hp), replace=False)
        pick = np.flatnonzero(np.isin(train_patients, keep))
    else:
        pick = np.sort(rng.choice(n_train, size=min(n_train, n_h), replace=False))
    d_to_sub = nearest_in_subset(search, d_syn, i_syn, pick, n_train)
    d_to_hol = search("synthetic", "holdout", k=1)[0][:, 0]
    closer = int((d_to_sub < d_to_hol).sum())  # ties count as not closer
    p_share = closer / n_syn if n_syn else float("nan")
    binom_p = float(stats.binomtest(closer, n_syn, 0.5, alternative="greater").pvalue) if n_syn else float("nan")
    closer_est = rate_estimate(closer, n_syn, unit="slice", confidence=confidence)

    tau_c, _ = calibrated_threshold(carlini_h, alpha=alpha)
    hist_hi = float(np.quantile(np.r_[d1, d_to_hol, d_hol[:, 0]], 0.99)) if n_syn else 1.0
    bins = np.linspace(0.0, max(hist_hi, 1e-9), hist_bins + 1)
    hist = {
        "bins": [float(b) for b in bins],
        "train": np.histogram(np.clip(d1, 0, bins[-1]), bins)[0].tolist(),
        "holdout": np.histogram(np.clip(d_to_hol, 0, bins[-1]), bins)[0].tolist(),
        "holdout_to_train": np.histogram(np.clip(d_hol[:, 0], 0, bins[-1]), bins)[0].tolist(),
        "meaning": "train: synthetic→train nearest distance (DCR); holdout: synthetic→holdout; "
        "holdout_to_train: the calibration reference (novel real images)",
    }
    copy_detection = {
        "threshold": float(tau),
        "alpha": float(alpha),
        "alpha_effective": float(alpha_eff),
        "n_holdout_calibration": int(n_h),
        "views": views,
        "copy_rate": copy_rate,
        "flagged_rate": flagged,
        "alpha_upper": float(fpr_hi),
        "alpha_upper_unit": fpr_unit,
        "n_holdout_patients": n_cal_patients,
        "holdout_patients_below_threshold": k_cal_patients,
        "copies_detected": bool(flagged.ci[0] > fpr_hi),
        "patients_copied": patients_copied,
        "closer_to_train_share": closer_est,
        "closer_to_train_pvalue": binom_p,
        "dcr_overfitting_protection": float(min(2 * (1 - p_share), 1.0)) if n_syn else None,
        "legacy": {
            "nndr_lt_0_6": rate_estimate(int((nndr < legacy_nndr).sum()), n_syn, unit="slice", confidence=confidence),
            "nndr_lt_1_3": rate_estimate(int((nndr < legacy_gu).sum()), n_syn, unit="slice", confidence=confidence),
            "lpips_lt_0_05": skipped("LPIPS needs VGG backbone weights that are not available locally; not computed"),
        },
    }
    order = np.argsort(d1, kind="stable")[: min(top_k, n_syn)]
    copy_detection["top_pairs"] = [
        {
            "synthetic_index": int(i),
            "train_index": int(nn_index[i]),
            "distance": float(d1[i]),
            "flagged": bool(is_copy[i]),
        }
        for i in order
    ]
    memorisation = {
        "d1_median": float(np.median(d1)) if n_syn else None,
        "holdout_d1_median": float(np.median(d_hol[:, 0])),
        "nndr_median": float(np.median(nndr)) if n_syn else None,
        "carlini_ratio_median": float(np.median(carlini)) if n_syn else None,
        "carlini_threshold": float(tau_c),
        "memorised_rate": rate_estimate(int((carlini < tau_c).sum()), n_syn, unit="slice", confidence=confidence),
        "memorised_rate_meaning": "share of synthetic slices whose Carlini ratio is below its holdout-calibrated "
                                  "alpha-quantile",
        "legacy_nndr_rate": rate_estimate(int((nndr < legacy_nndr).sum()), n_syn, unit="slice", confidence=confidence),
    }
    per_slice = {
        "d1": d1,
        "d2": d2,
        "nndr": nndr,
        "carlini": carlini,
        "nn_index": nn_index,
        "nn_patient": nn_patient,
        "copy": is_copy,
        "d_holdout": d_to_hol,
    }
    return CopyResult(space, per_slice, copy_detection, memorisation, hist, holdout_d1=d_hol[:, 0])
