"""Planted-copy trials: the auditor's ground truth, shared by the tests and bench/bench_copy_sweep.py.

One trial draws its own phantom, patient split (train / holdout / novel), copies and transforms
from ``seed``, calibrates the copy search on train + holdout, and audits synthetic sets of
``n_synthetic`` slices made of novel slices plus copies of training slices at each planted rate
(each copy under one transform of :data:`cmraudit.data.copy_transforms.COPY_TRANSFORMS`). Rates
given in ``binomial_rates`` plant Binomial(n, rate) copies instead of exactly round(rate · n) (keys
``binomial:<rate>``).
"""
from __future__ import annotations

import time

import numpy as np

from ..data.phantom import PhantomConfig, make_phantom
from ..privacy.copy_search import (
    CopySearchParams,
    calibrate,
    copy_rate_interval,
    min_detectable_rate,
    recall_check,
)
from ..data.copy_transforms import COPY_TRANSFORMS, plant_copies


def copy_trial(
    seed: int,
    *,
    subjects: int = 90,
    slices: int = 5,
    size: int = 64,
    split=(50, 20, 20),
    n_synthetic: int = 400,
    rates=(0.0, 0.01, 0.02, 0.05, 0.45),
    binomial_rates=(),
    budget: float = 0.02,
    params: CopySearchParams | None = None,
    images=None,
    patients=None,
) -> dict:
    """Run one seeded trial; returns per-rate results and per-copy detections (see module docstring).

    ``images`` / ``patients``: use this real data instead of a phantom (e.g. Sunnybrook).
    """
    params = params or CopySearchParams()
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    if images is None:
        ds = make_phantom(PhantomConfig(subjects=subjects, slices=slices, size=size), seed=seed)
        images, patients = np.asarray(ds.images), ds.patient_id.astype(str)
    patients = np.asarray(patients).astype(str)
    pats = np.unique(patients)
    rng.shuffle(pats)
    n_tr, n_ho, n_nv = split
    groups = {
        "train": pats[:n_tr],
        "holdout": pats[n_tr : n_tr + n_ho],
        "novel": pats[n_tr + n_ho : n_tr + n_ho + n_nv],
    }
    sel = {k: np.isin(patients, v) for k, v in groups.items()}
    tr_img, tr_pat = images[sel["train"]], patients[sel["train"]]
    index = params.index(tr_img, tr_pat)
    tau, tail, info = calibrate(
        index, tr_img, images[sel["holdout"]], patients[sel["holdout"]], params=params, seed=seed
    )
    fu, f = tail.cdf_upper(tau), tail.cdf(tau)
    rec = recall_check(index, tr_img, tau=tau, n_copies=params.recall_copies, seed=seed + 1)
    novel = images[sel["novel"]]
    nov_pat = patients[sel["novel"]]
    d_nov, _ = index.query(novel, k=1)
    out = {
        "seed": seed,
        "tau": tau,
        "fpr": f,
        "fpr_upper": fu,
        "tau_rule": info["rule"],
        "recall": rec["estimate"].value,
        "recall_lower": rec["estimate"].ci[0],
        "null_min": tail.minimum,
        "novel_flags": int((d_nov[:, 0] < tau).sum()),
        "novel_slices": int(len(novel)),
        "novel_min": float(d_nov[:, 0].min()),
        "novel_flag_patients": sorted(set(nov_pat[d_nov[:, 0] < tau])),
        "rates": {},
        "copies": [],
    }
    mdr = min_detectable_rate(n_synthetic, recall=rec["estimate"].value, fpr=f, fpr_upper=fu, power=params.power)
    out["mdr"] = mdr
    plan = [(str(r), r, False) for r in rates] + [(f"binomial:{r}", r, True) for r in binomial_rates]
    for key, rate, binomial in plan:
        n_copy = int(rng.binomial(n_synthetic, rate)) if binomial else int(round(rate * n_synthetic))
        kinds = rng.choice(np.array(COPY_TRANSFORMS), size=n_copy)
        src = rng.choice(len(tr_img), size=n_copy)
        copies = plant_copies(tr_img, src, kinds, rng)
        d_cp, i_cp = index.query(copies, k=1) if n_copy else (np.zeros((0, 1)), np.zeros((0, 1), int))
        nov_pick = rng.choice(len(novel), size=n_synthetic - n_copy, replace=True)
        flags_nov = int((d_nov[nov_pick, 0] < tau).sum())
        found = d_cp[:, 0] < tau
        k = flags_nov + int(found.sum())
        est = copy_rate_interval(
            k, n_synthetic, fpr=f, fpr_upper=fu, recall=rec["estimate"], confidence=params.confidence
        )
        lo, hi = est.ci
        verdict = "fail" if lo > 0 else "pass" if hi <= budget else "inconclusive"
        planted = n_copy / n_synthetic
        out["rates"][key] = {
            "planted": planted,
            "flags": k,
            "false_flags": flags_nov,
            "value": est.value,
            "ci": [lo, hi],
            "covered": bool(lo <= planted <= hi),
            "verdict": verdict,
        }
        out["copies"] += [{"transform": str(t), "found": bool(x and tr_pat[i] == tr_pat[s])}
                          for t, x, i, s in zip(kinds, found, i_cp[:, 0], src)]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
