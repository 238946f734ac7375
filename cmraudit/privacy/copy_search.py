"""Decisive copy detection: the registered search, calibrated per patient, with recall and power.

The statistic of a synthetic slice is its **registered residual** ρ to the nearest training slice
(:mod:`cmraudit.features.alignment`: invariant to the dihedral group, rotations ≤ 20°, shifts,
intensity polynomials, tolerant of noise, blur and mild elastic deformation), searched among the
``k_candidates`` nearest training slices of the weight-free spectral embedding
(:mod:`cmraudit.features.spectral`). A slice is flagged when ρ < τ.

Calibration (docs/privacy.md, "How the copy rate is calibrated"):

* null residuals: holdout → train and leave-one-patient-out train → other training patients;
  a right-censored Weibull tail fitted to them, bootstrapped over patients
  (:mod:`cmraudit.privacy.null_model`);
* τ = min(the residual at which the tail's 95 % upper false-flag rate reaches ``alpha``,
  ``margin`` × the smallest null residual observed): placed well below every novel slice seen;
* recall: the audit plants ``recall_copies`` copies of random training slices under every
  transform of :mod:`cmraudit.data.copy_transforms` and counts how many fall under τ;
* copy rate c from the flagged share p, false-flag rate f and recall r: point (p − f)/(r − f);
  95 % interval [(p_lo − f_u)/(1 − f_u), p_hi / r_lo] from the Wilson interval [p_lo, p_hi] of p,
  the tail's upper bound f_u and the Wilson lower bound r_lo of the recall;
* minimum detectable copy rate: the smallest c whose copies make the interval exclude 0 with
  80 % probability (binomial flags at c·r + (1 − c)·f).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._lazy import LazyModule
from ..data.copy_transforms import COPY_TRANSFORMS, plant_copies
from ..estimates import Estimate, rate_estimate, wilson_ci
from ..features.alignment import RegisteredSearch
from ..features.neighbours import knn
from ..features.spectral import SpectralFeatures
from .copies import CopyResult
from .null_model import NullTail, fit_null_tail

stats = LazyModule("scipy.stats")


@dataclass(frozen=True)
class CopySearchParams:
    """Knobs of the registered copy search (defaults validated by bench/bench_copy_sweep.py)."""

    alpha: float = 1e-3  # target false-flag rate per novel slice (bootstrap upper bound of the fitted tail)
    margin: float = 0.5  # τ ≤ margin × the smallest null residual observed
    k_candidates: int = 10
    recall_copies: int = 44  # planted self-copies for the recall check (spread over the transforms)
    n_boot: int = 400
    confidence: float = 0.95
    power: float = 0.8
    max_null_queries: int = 3000  # per null set (holdout→train, leave-one-patient-out): a seeded slice subsample
    fine_window_px: int | None = 2  # RegisteredSearch: shifts refined around the coarse best (None: all of them)
    envelope_weight: float = 0.5  # SpectralFeatures: weight of the rings' means in the candidates' embedding

    def index(self, images: np.ndarray, patients: np.ndarray) -> "RegisteredCopyIndex":
        """The training slices indexed with these parameters."""
        return RegisteredCopyIndex(images, patients, k_candidates=self.k_candidates,
                                   registration=RegisteredSearch(fine_window_px=self.fine_window_px),
                                   spectral=SpectralFeatures(envelope_weight=self.envelope_weight))


class RegisteredCopyIndex:
    """Training slices indexed for the registered search; :meth:`query` returns residuals and rows."""

    def __init__(self, images: np.ndarray, patients: np.ndarray, *, k_candidates: int = 10,
                 registration: RegisteredSearch | None = None, spectral: SpectralFeatures | None = None):
        self.registration = registration or RegisteredSearch()
        self.spectral = spectral or SpectralFeatures()
        self.patients = np.asarray(patients).astype(str)
        self.k_candidates = int(k_candidates)
        self.prep = self.registration.prepare(images)
        self.emb = self._embed(images, self.prep)
        _, counts = np.unique(self.patients, return_counts=True)
        self.max_per_patient = int(counts.max())

    def _embed(self, images: np.ndarray, prep: dict) -> np.ndarray:
        """Spectral embedding; from the registration's coarse copies when they are the blurred, downsampled slices
        the embedding would compute itself (same blur and size: identical features, one blur instead of two)."""
        sp, rg = self.spectral, self.registration
        if sp.blur_px == rg.blur_px and prep["coarse"].shape[-1] == min(sp.size, prep["native"]):
            return sp.transform_blurred(prep["coarse"].numpy())
        return sp.transform_images(images)

    def __len__(self) -> int:
        return len(self.patients)

    def query(self, images: np.ndarray | None = None, *, rows: np.ndarray | None = None,
              exclude_patients: np.ndarray | None = None, k: int = 2):
        """(residuals [Q, k] ascending, training rows [Q, k]) of each query image; ``exclude_patients``
        [Q] drops candidates of the query's own patient (leave-one-patient-out null). ``rows`` instead of
        ``images``: the queries are these training slices of the index (their prepared copies are reused)."""
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            q_prep = {"native": self.prep["native"], "fine": self.prep["fine"][rows],
                      "coarse": self.prep["coarse"][rows]}
            q_emb = self.emb[rows]
        else:
            q_prep = self.registration.prepare(images)
            q_emb = self._embed(images, q_prep)
        extra = self.max_per_patient if exclude_patients is not None else 0
        kc = min(len(self), self.k_candidates + extra)
        cand = knn(q_emb, self.emb, k=kc).indices
        if exclude_patients is not None:
            ex = np.asarray(exclude_patients).astype(str)
            bad = self.patients[cand] == ex[:, None]
            cand = np.where(bad, -1, cand)
            order = np.argsort(cand < 0, axis=1, kind="stable")  # valid candidates first, in rank order
            cand = np.take_along_axis(cand, order, 1)[:, : self.k_candidates]
        else:
            cand = cand[:, : self.k_candidates]
        D, I = self.registration.search(q_prep, self.prep, cand, k=max(k, 2))
        return D[:, :k], I[:, :k]


def _wilson_lower_exceeds(k: int, n: int, f_u: float, confidence: float) -> bool:
    return wilson_ci(k, n, confidence=confidence)[0] > f_u


def min_flags_to_detect(n: int, f_u: float, *, confidence: float = 0.95) -> int:
    """Smallest number of flags out of ``n`` whose Wilson lower bound exceeds the false-flag bound ``f_u``."""
    for k in range(1, n + 1):
        if _wilson_lower_exceeds(k, n, f_u, confidence):
            return k
    return n + 1


def min_detectable_rate(n: int, *, recall: float, fpr: float, fpr_upper: float, power: float = 0.8,
                        confidence: float = 0.95) -> float | None:
    """Smallest copy rate whose flags make the copy-rate interval exclude 0 with probability ``power``."""
    if n <= 0 or recall <= fpr:
        return None
    k_star = min_flags_to_detect(n, fpr_upper, confidence=confidence)
    if k_star > n:
        return None

    def pw(c):
        return float(stats.binom.sf(k_star - 1, n, c * recall + (1 - c) * fpr))

    if pw(1.0) < power:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if pw(mid) < power else (lo, mid)
    return float(hi)


def copy_rate_interval(
    k: int, n: int, *, fpr: float, fpr_upper: float, recall: Estimate, confidence: float = 0.95
) -> Estimate:
    """Copy rate corrected for false flags and recall < 1 (see module docstring)."""
    p = k / n if n else float("nan")
    lo, hi = wilson_ci(k, n, confidence=confidence)
    r, r_lo = float(recall.value), float(recall.ci[0])
    point = min(1.0, max(0.0, (p - fpr) / max(r - fpr, 1e-9)))
    low = min(1.0, max(0.0, (lo - fpr_upper) / (1 - fpr_upper)))
    high = min(1.0, hi / max(r_lo, 1e-9))
    return Estimate(
        value=point, ci=(low, max(high, point)), n=n, unit="slice", method="wilson, fpr- and recall-corrected"
    )


def recall_check(index: RegisteredCopyIndex, train_images: np.ndarray, *, tau: float, n_copies: int, seed: int,
                 confidence: float = 0.95) -> dict:
    """Plant copies of random training slices under every transform and count those found under τ."""
    rng = np.random.default_rng(seed)
    per = max(1, int(np.ceil(n_copies / len(COPY_TRANSFORMS))))
    kinds = np.repeat(np.array(COPY_TRANSFORMS), per)
    src = rng.choice(len(index), size=len(kinds), replace=len(kinds) > len(index))
    copies = plant_copies(np.asarray(train_images), src, kinds, rng)
    D, I = index.query(copies, k=1)
    found = (D[:, 0] < tau) & (index.patients[I[:, 0]] == index.patients[src])
    per_t = {t: {"found": int(found[kinds == t].sum()), "planted": int((kinds == t).sum())} for t in COPY_TRANSFORMS}
    return {"estimate": rate_estimate(int(found.sum()), len(found), unit="slice", confidence=confidence),
            "per_transform": per_t, "residual_max": float(np.max(D[:, 0]))}


def calibrate(index: RegisteredCopyIndex, train_images, holdout_images, holdout_patients, *, params: CopySearchParams,
              seed: int) -> tuple[float, NullTail, dict]:
    """Null residuals (holdout→train and leave-one-patient-out train→train), tail fit and τ.

    Each null set above ``params.max_null_queries`` slices is subsampled (seeded, uniform over slices, so every
    patient keeps its share): the tail fit needs thousands of null residuals, not every slice of a large study,
    and the registered search costs milliseconds a query.
    """
    rng = np.random.default_rng([int(seed), 0x6E756C6C])

    def pick(n: int) -> np.ndarray:
        cap = int(params.max_null_queries)
        return np.arange(n) if cap <= 0 or n <= cap else np.sort(rng.choice(n, size=cap, replace=False))

    h_rows, t_rows = pick(len(holdout_images)), pick(len(index))
    holdout_patients = np.asarray(holdout_patients).astype(str)[h_rows]
    d_h, _ = index.query(np.asarray(holdout_images)[h_rows], k=1)
    d_t, _ = index.query(rows=t_rows, exclude_patients=index.patients[t_rows], k=1)  # train_images are the index
    vals = np.r_[d_h[:, 0], d_t[:, 0]]
    pats = np.r_[np.char.add("holdout:", holdout_patients), np.char.add("train:", index.patients[t_rows])]
    n_train_pat = len(np.unique(index.patients))
    tail = fit_null_tail(vals, pats, n_train_patients=n_train_pat, seed=seed, n_boot=params.n_boot,
                         confidence=params.confidence)
    tau_alpha = tail.quantile_upper(params.alpha)
    tau_margin = params.margin * tail.minimum
    tau = float(min(tau_alpha, tau_margin))
    info = {"tau_alpha": tau_alpha, "tau_margin": tau_margin, "rule": "alpha" if tau_alpha <= tau_margin else "margin",
            "holdout_residuals": d_h[:, 0], "train_loo_residuals": d_t[:, 0],
            "n_null": {"holdout": int(len(h_rows)), "holdout_total": int(len(holdout_images)),
                       "train_loo": int(len(t_rows)), "train_total": int(len(index))}}
    return tau, tail, info


def flagged_by_patient(flag: np.ndarray, rows: np.ndarray, rho: np.ndarray, train_patients: np.ndarray) -> list[dict]:
    """Flags grouped by the training patient they match: slices flagged, smallest residual, synthetic indices.

    The report is meant to be shared, and naming a training patient there would reveal a member: each patient is
    an opaque ``match`` label; the ids are in the local per-slice table (``privacy/per_slice_registered.csv``,
    column ``nn_patient``) for the reviewer.
    """
    out = []
    pats = np.asarray(train_patients).astype(str)[rows]
    for p in np.unique(pats[flag]):
        sel = np.flatnonzero(flag & (pats == p))
        out.append({"slices": int(len(sel)), "min_residual": float(rho[sel].min()),
                    "synthetic_indices": [int(i) for i in sel[:20]]})
    out = sorted(out, key=lambda d: (-d["slices"], d["min_residual"]))
    for i, d in enumerate(out, 1):
        d["match"] = f"training patient #{i} (id in privacy/per_slice_registered.csv, column nn_patient)"
    return out


def _patients_copied(
    flag, rows, train_patients, copy_rate: Estimate, *, k: int, n: int, fpr_upper: float, confidence: float
) -> Estimate:
    """Share of training patients with a copy: flagged matches, corrected for false flags (lower end) and
    for copies the search could have missed (upper end: at most n · c_hi − k more copies, one patient each)."""
    pats = np.unique(np.asarray(train_patients).astype(str))
    n_pat = max(1, len(pats))
    hit = len(np.unique(np.asarray(train_patients).astype(str)[rows[flag]])) if flag.any() else 0
    false_max = int(np.ceil(n * fpr_upper)) if k else 0
    lo = max(0, hit - false_max) / n_pat
    missed = max(0.0, n * copy_rate.ci[1] - k)
    hi = min(1.0, (hit + missed) / n_pat)
    return Estimate(
        value=hit / n_pat, ci=(lo, max(hi, hit / n_pat)), n=n_pat, unit="patient", method="copy-count bound"
    )


def registered_copy_detection(train, holdout, synthetic, *, params: CopySearchParams | None = None, seed: int,
                              hist_bins: int = 30, top_k: int = 12):
    """The ``registered`` space of the privacy audit: decisive copy detection (see module docstring)."""
    params = params or CopySearchParams()
    tr_img = np.asarray(train.images)
    index = params.index(tr_img, train.patient_id)
    tau, tail, info = calibrate(index, tr_img, np.asarray(holdout.images), holdout.patient_id, params=params, seed=seed)
    f, f_u = tail.cdf(tau), tail.cdf_upper(tau)
    rec = recall_check(
        index, tr_img, tau=tau, n_copies=params.recall_copies, seed=seed + 1, confidence=params.confidence
    )
    D, I = index.query(np.asarray(synthetic.images), k=2)
    rho, rows = D[:, 0], I[:, 0]
    flag = rho < tau
    n, k = len(rho), int(flag.sum())
    copy_rate = copy_rate_interval(k, n, fpr=f, fpr_upper=f_u, recall=rec["estimate"], confidence=params.confidence)
    mdr = min_detectable_rate(n, recall=float(rec["estimate"].value), fpr=f, fpr_upper=f_u, power=params.power,
                              confidence=params.confidence)
    null = np.r_[info["holdout_residuals"], info["train_loo_residuals"]]
    hi = float(np.quantile(np.r_[rho, null], 0.99)) if n else 1.0
    bins = np.linspace(0.0, max(hi, 1e-9), hist_bins + 1)
    hist = {
        "bins": [float(b) for b in bins],
        "train": np.histogram(np.clip(rho, 0, bins[-1]), bins)[0].tolist(),
        "holdout_to_train": np.histogram(np.clip(info["holdout_residuals"], 0, bins[-1]), bins)[0].tolist(),
        "meaning": "train: synthetic→train registered residual; holdout_to_train: the calibration reference (novel "
                   "real slices)",
    }
    order = np.argsort(rho, kind="stable")[: min(top_k, n)]
    tr_pat = np.asarray(train.patient_id).astype(str)
    copy_detection = {
        "statistic": "registered residual (share of the training slice's variance left unexplained; 0 = exact copy)",
        "threshold": tau,
        "threshold_rule": info["rule"],
        "threshold_alpha": info["tau_alpha"],
        "threshold_margin": info["tau_margin"],
        "alpha": params.alpha,
        "margin": params.margin,
        "alpha_effective": f,
        "alpha_upper": f_u,
        "alpha_upper_unit": "slice (patient-bootstrap of the fitted null tail)",
        "null_tail": tail.to_dict(),
        "search": {"registration": index.registration.get_params(), "candidates": index.spectral.get_params(),
                   "k_candidates": index.k_candidates},
        "n_holdout_calibration": int(info["n_null"]["holdout"]),
        "null_queries": {**info["n_null"], "cap": int(params.max_null_queries),
                         "meaning": "null slices searched (holdout→train, leave-one-patient-out); a seeded subsample "
                                    "above the cap"},
        "n_holdout_patients": int(len(np.unique(np.asarray(holdout.patient_id).astype(str)))),
        "recall": rec["estimate"],
        "recall_per_transform": rec["per_transform"],
        "copy_rate": copy_rate,
        "flagged_rate": rate_estimate(k, n, unit="slice", confidence=params.confidence),
        "copies_detected": bool(copy_rate.ci[0] > 0),
        "patients_copied": _patients_copied(
            flag, rows, tr_pat, copy_rate, k=k, n=n, fpr_upper=f_u, confidence=params.confidence
        ),
        "flagged_by_patient": flagged_by_patient(flag, rows, rho, tr_pat),
        "min_detectable_copy_rate": mdr,
        "min_detectable_copy_rate_power": params.power,
        "closer_to_train_share": {"status": "skipped", "reason": "reported in the pixel and domain spaces"},
        "top_pairs": [
            {
                "synthetic_index": int(i),
                "train_index": int(rows[i]),
                "distance": float(rho[i]),
                "flagged": bool(flag[i]),
            }
            for i in order
        ],
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        nndr = np.where(D[:, 1] > 0, rho / D[:, 1], 0.0)
    memorisation = {"d1_median": float(np.median(rho)) if n else None,
                    "holdout_d1_median": float(np.median(info["holdout_residuals"])),
                    "nndr_median": float(np.median(nndr)) if n else None}
    per_slice = {"d1": rho, "d2": D[:, 1], "nndr": nndr, "carlini": np.full(n, np.nan), "nn_index": rows,
                 "nn_patient": tr_pat[rows], "copy": flag, "d_holdout": np.full(n, np.nan)}
    return CopyResult("registered", per_slice, copy_detection, memorisation, hist, holdout_d1=info["holdout_residuals"])
