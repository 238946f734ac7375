"""Black-box membership inference from the synthetic data only.

Threat model: the attacker holds the released synthetic set, a *reference* set of real
non-member slices from the same population, and candidate slices; it asks which candidates'
patients were in the generator's training set. Scores are computed for members (train) and
non-members (holdout); higher = more likely a member.

The reference set is half of the holdout patients, cross-fitted (2 folds by patient): a
candidate in fold f is scored with the reference ``holdout fold 1−f``, so no candidate is
ever its own reference and no threshold or parameter is fitted on member labels.

- ``gan_leaks`` (Chen et al. 2020, calibrated): score = d_min(x, reference) − d_min(x,
  synthetic) — a monotone form of sigmoid(−(d_syn − d_ref)). Computed per feature space.
- ``domias`` (van Breugel et al. 2023): score = log p_synthetic(x) − log p_reference(x),
  Gaussian KDEs (Scott bandwidth, isotropic after whitening by a PCA fitted on train ∪ holdout
  without labels), each truncated to the ``kde_k`` nearest points (memory linear in the data),
  in the domain embedding.
"""
from __future__ import annotations

import numpy as np

from ..._lazy import LazyModule
from ...features.neighbours import APPROX_THRESHOLD, knn, knn_and_reverse
from .interface import Attack, AuditContext
from .metrics import evaluate_attack

special = LazyModule("scipy.special")

BLACKBOX = "black-box (synthetic data + reference real data)"


def crossfit_reference_folds(holdout_patients: np.ndarray, train_patients: np.ndarray, *, seed: int):
    """Fold (0/1) per holdout slice and per train slice, patients split in halves."""
    rng = np.random.default_rng(seed + 101)

    def folds(p):
        p = np.asarray(p).astype(str)
        u = np.unique(p)
        rng.shuffle(u)
        one = set(u[: len(u) // 2].tolist())
        return np.array([1 if x in one else 0 for x in p], dtype=int)

    return folds(holdout_patients), folds(train_patients)


def gan_leaks_scores(*, train_feats, holdout_feats, synthetic_feats, fold_h, fold_t,
                     nearest_synthetic: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated GAN-Leaks scores for (train, holdout) candidates. ``nearest_synthetic``: the distances of the
    train / holdout slices to their nearest synthetic slice where the copy search already computed them."""
    known = nearest_synthetic or {}
    d_syn_t = known.get("train")
    d_syn_h = known.get("holdout")
    if d_syn_t is None or len(d_syn_t) != len(train_feats):
        d_syn_t = knn(train_feats, synthetic_feats, k=1).distances[:, 0]
    if d_syn_h is None or len(d_syn_h) != len(holdout_feats):
        d_syn_h = knn(holdout_feats, synthetic_feats, k=1).distances[:, 0]
    s_t = np.empty(len(train_feats))
    s_h = np.empty(len(holdout_feats))
    halves = {}
    exhaustive = np.asarray(holdout_feats).shape[1] >= 256 and len(holdout_feats) <= APPROX_THRESHOLD
    if exhaustive and (fold_h == 0).any() and (fold_h == 1).any():
        # holdout half 0 → half 1 and 1 → 0: both directions of one distance matrix, one pass (as the copy search)
        fwd, rev = knn_and_reverse(holdout_feats[fold_h == 0], holdout_feats[fold_h == 1], k=1)
        halves = {0: fwd.distances[:, 0], 1: rev.distances[:, 0]}
    for f in (0, 1):
        ref = holdout_feats[fold_h == 1 - f]
        if len(ref) == 0:
            ref = holdout_feats[fold_h == f]
        st, sh = fold_t == f, fold_h == f
        if st.any():
            s_t[st] = knn(train_feats[st], ref, k=1).distances[:, 0] - d_syn_t[st]
        if sh.any():
            d_ref = halves[f] if f in halves else knn(holdout_feats[sh], ref, k=1).distances[:, 0]
            s_h[sh] = d_ref - d_syn_h[sh]
    return s_t, s_h


def _pca(x: np.ndarray, dims: int):
    mu = x.mean(0)
    xc = x - mu
    _, s, vt = np.linalg.svd(xc[: min(len(xc), 20000)], full_matrices=False)
    dims = min(dims, vt.shape[0])
    scale = s[:dims] / np.sqrt(max(1, min(len(xc), 20000) - 1))
    scale = np.where(scale > 1e-8, scale, 1.0)
    return lambda z: ((z - mu) @ vt[:dims].T / scale).astype(np.float32)


def kde_logpdf(query: np.ndarray, base: np.ndarray, *, k: int = 50) -> np.ndarray:
    """log density of an isotropic Gaussian KDE (Scott bandwidth), truncated to k nearest points."""
    n, d = base.shape
    h = float(np.mean(base.std(0))) * n ** (-1.0 / (d + 4))
    h = max(h, 1e-6)
    kk = min(k, n)
    nb = knn(query, base, k=kk)
    logk = -(nb.distances**2) / (2 * h * h)
    return special.logsumexp(logk, axis=1) - np.log(n) - d * np.log(h * np.sqrt(2 * np.pi))


def domias_scores(*, train_feats, holdout_feats, synthetic_feats, fold_h, fold_t, dims: int = 8, k: int = 50):
    proj = _pca(np.concatenate([train_feats, holdout_feats]).astype(np.float64), dims)
    zt, zh, zs = proj(train_feats), proj(holdout_feats), proj(synthetic_feats)
    ls_t, ls_h = kde_logpdf(zt, zs, k=k), kde_logpdf(zh, zs, k=k)
    s_t = np.empty(len(zt))
    s_h = np.empty(len(zh))
    for f in (0, 1):
        ref = zh[fold_h == 1 - f]
        if len(ref) < 2:
            ref = zh
        st, sh = fold_t == f, fold_h == f
        if st.any():
            s_t[st] = ls_t[st] - kde_logpdf(zt[st], ref, k=k)
        if sh.any():
            s_h[sh] = ls_h[sh] - kde_logpdf(zh[sh], ref, k=k)
    return s_t, s_h


class GanLeaks(Attack):
    """Calibrated GAN-Leaks in every feature space of the audit: blocks ``gan_leaks_<space>``."""

    name = "gan_leaks"
    needs = ("synthetic",)
    threat_model = BLACKBOX

    def evaluate(self, ctx: AuditContext) -> dict:
        out = {}
        fold_h, fold_t = ctx.folds
        for space, (f_t, f_h, f_s) in ctx.feats.items():
            with ctx.steps(f"gan_leaks {space}"):
                s_t, s_h = gan_leaks_scores(train_feats=f_t, holdout_feats=f_h, synthetic_feats=f_s, fold_h=fold_h,
                                            fold_t=fold_t,
                                            nearest_synthetic=ctx.cache.get("nearest_synthetic", {}).get(space))
                out[f"gan_leaks_{space}"] = evaluate_attack(
                    f"gan_leaks_{space}", scores=np.r_[s_t, s_h], member=ctx.member, groups=ctx.groups,
                    info={"threat_model": BLACKBOX, "feature_space": space,
                          "reference": "holdout, 2-fold cross-fit by patient"}, **ctx.ev)
        return out


class Domias(Attack):
    """DOMIAS density ratio in the domain embedding (else the first space of the audit)."""

    name = "domias"
    needs = ("synthetic",)
    threat_model = BLACKBOX

    def evaluate(self, ctx: AuditContext) -> dict:
        cfg = ctx.config
        space = "domain" if "domain" in ctx.feats else next(iter(ctx.feats))
        f_t, f_h, f_s = ctx.feats[space]
        fold_h, fold_t = ctx.folds
        with ctx.steps("domias"):
            s_t, s_h = domias_scores(train_feats=f_t, holdout_feats=f_h, synthetic_feats=f_s, fold_h=fold_h,
                                     fold_t=fold_t, dims=cfg.domias_dims, k=cfg.kde_k)
            res = evaluate_attack(
                "domias", scores=np.r_[s_t, s_h], member=ctx.member, groups=ctx.groups,
                info={"threat_model": BLACKBOX, "feature_space": space,
                      "kde": f"Gaussian KDE, {cfg.domias_dims}-d PCA, {cfg.kde_k} nearest points"}, **ctx.ev)
        return {"domias": res}
