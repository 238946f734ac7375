"""White-box membership inference with the fitted generator (``tags.has_loss``).

Threat model: the attacker has the generator's weights and can evaluate its training loss.

- ``loss`` (Matsumoto et al. 2023; Carlini et al. 2023): the per-slice denoising loss at a
  grid of timesteps with fixed noise (``seed``); each timestep's loss is standardised over all
  candidates (no labels used), score = −mean standardised loss (members are fitted better).
- ``fcre`` (legacy, reference study / Zhao et al. 2025): needs the generator hook
  ``prediction_pair(images, masks, *, t, seed) -> (prediction, target)`` (e.g. predicted and
  true noise, [N, H, W]); features: MSE of the error map after an FFT radial band-pass keeping
  0.15–0.85 of the maximum radius, and 1 − SSIM(prediction, target), averaged over t in
  [300, 600). The reference study fits a logistic regression on the target's own member
  labels; here it is 2-fold cross-fitted by patient (each half scored by a model fitted on
  the other half), so no slice is scored with its own label.
"""
from __future__ import annotations

import inspect

import numpy as np

from ...data.dataset import Dataset
from ...estimates import skipped
from .interface import Attack, AuditContext, audit_timesteps
from .metrics import evaluate_attack


def _call(fn, images, masks, *, t, seed):
    try:
        accepts_seed = "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        accepts_seed = False
    return fn(images, masks, t=t, seed=seed) if accepts_seed else fn(images, masks, t=t)


def hook_precision(generator) -> str:
    """The arithmetic the generator's white-box hooks run in, for the report: its ``hook_precision`` property when it
    has one (the built-in two-stage generators: the precision they were trained in), else ``fp32``."""
    return str(getattr(generator, "hook_precision", None) or "fp32")


def loss_matrix(generator, ds, *, timesteps, seed: int, batch: int = 64) -> np.ndarray:
    """[N, T] per-slice loss of ``generator`` at each timestep (fixed noise by seed)."""
    out = np.empty((len(ds), len(timesteps)))
    for j, t in enumerate(timesteps):
        for s in range(0, len(ds), batch):
            im = np.asarray(ds.images[s : s + batch], dtype=np.float32)
            mk = np.asarray(ds.masks[s : s + batch])
            out[s : s + batch, j] = np.asarray(
                _call(generator.loss, im, mk, t=t, seed=seed + 1000 * j + s), dtype=np.float64
            ).reshape(-1)
    return out


def loss_scores(loss: np.ndarray) -> np.ndarray:
    """−mean over t of per-t standardised loss (standardised over all candidates, no labels)."""
    mu = loss.mean(0, keepdims=True)
    sd = loss.std(0, keepdims=True)
    return -((loss - mu) / np.where(sd > 0, sd, 1.0)).mean(1)


def bandpass(err: np.ndarray, lo: float = 0.15, hi: float = 0.85) -> np.ndarray:
    """Keep spatial frequencies with radius in [lo, hi] × max radius ([N, H, W])."""
    n, h, w = err.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    r = np.sqrt(fy**2 + fx**2)
    r = r / r.max()
    keep = (r >= lo) & (r <= hi)
    return np.real(np.fft.ifft2(np.fft.fft2(err) * keep))


def _ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = np.empty(len(a))
    for i in range(len(a)):
        x, y = a[i].astype(np.float64), b[i].astype(np.float64)
        mx, my = uniform_filter(x, 7), uniform_filter(y, 7)
        sxx = uniform_filter(x * x, 7) - mx * mx
        syy = uniform_filter(y * y, 7) - my * my
        sxy = uniform_filter(x * y, 7) - mx * my
        out[i] = float(np.mean(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))))
    return out


def fcre_features(generator, ds, *, timesteps, seed: int, batch: int = 64) -> np.ndarray:
    feats = np.zeros((len(ds), 2))
    for j, t in enumerate(timesteps):
        for s in range(0, len(ds), batch):
            im = np.asarray(ds.images[s : s + batch], dtype=np.float32)
            mk = np.asarray(ds.masks[s : s + batch])
            pred, target = _call(generator.prediction_pair, im, mk, t=t, seed=seed + 1000 * j + s)
            pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
            if pred.ndim == 4:
                pred, target = pred[:, 0], target[:, 0]
            feats[s : s + batch] += _fcre_batch(pred, target) / len(timesteps)
    return feats


def _fcre_batch(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[n, 2]: mean squared band-passed error and 1 − SSIM(prediction, target) of one batch of maps."""
    bp = bandpass(pred - target)
    rng_ = max(float(target.max() - target.min()), 1e-6)
    return np.stack([(bp**2).mean((1, 2)), 1 - _ssim(pred, target, rng_)], axis=1)


def whitebox_matrices(
    generator, ds, *, loss_timesteps, fcre_timesteps, seed: int, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """The loss matrix [N, len(loss_timesteps)] and the FCRE features [N, 2] with one network pass per timestep.

    For generators that declare ``loss_is_pair_mse = True`` (their ``loss`` is the per-slice mean
    squared error of ``prediction_pair``, as for the built-in ``ddpm`` and ``fm``): at a timestep in
    both grids the maps serve both attacks, which saves a pass. Noise at timestep t and batch start
    s comes from ``seed + 1000 · t + s`` for both, so the loss column equals ``generator.loss`` with
    that seed. Otherwise the two attacks run separately (:func:`loss_matrix`, :func:`fcre_features`).
    """
    if not getattr(generator, "loss_is_pair_mse", False):
        return (loss_matrix(generator, ds, timesteps=loss_timesteps, seed=seed, batch=batch),
                fcre_features(generator, ds, timesteps=fcre_timesteps, seed=seed, batch=batch))
    L = np.empty((len(ds), len(loss_timesteps)))
    F = np.zeros((len(ds), 2))
    for t in dict.fromkeys([*loss_timesteps, *fcre_timesteps]):
        cols = [j for j, u in enumerate(loss_timesteps) if u == t]
        in_fcre = t in fcre_timesteps
        for s in range(0, len(ds), batch):
            im = np.asarray(ds.images[s : s + batch], dtype=np.float32)
            mk = np.asarray(ds.masks[s : s + batch])
            sd = seed + 1000 * int(t) + s
            if not in_fcre:
                L[s : s + batch, cols] = np.asarray(
                    _call(generator.loss, im, mk, t=t, seed=sd), dtype=np.float64
                ).reshape(-1, 1)
                continue
            pred, target = (np.asarray(a, np.float64) for a in _call(generator.prediction_pair, im, mk, t=t, seed=sd))
            if pred.ndim == 4:
                pred, target = pred[:, 0], target[:, 0]
            L[s : s + batch, cols] = ((pred - target) ** 2).mean((1, 2))[:, None]
            F[s : s + batch] += _fcre_batch(pred, target) / len(fcre_timesteps)
    return L, F


def crossfit_logistic(features: np.ndarray, member: np.ndarray, groups: np.ndarray, *, seed: int) -> np.ndarray:
    """Scores from a logistic regression fitted on the other half of the patients (2 folds)."""
    from sklearn.linear_model import LogisticRegression  # deferred: half a second of import time
    from sklearn.preprocessing import StandardScaler

    groups = np.asarray(groups).astype(str)
    rng = np.random.default_rng(seed + 303)
    fold = np.zeros(len(groups), dtype=int)
    for m in (True, False):
        u = np.unique(groups[member == m])
        rng.shuffle(u)
        one = set(u[: len(u) // 2].tolist())
        sel = member == m
        fold[sel] = [1 if g in one else 0 for g in groups[sel]]
    scores = np.zeros(len(groups))
    for f in (0, 1):
        tr, te = fold != f, fold == f
        if not te.any():
            continue
        if len(np.unique(member[tr])) < 2:
            scores[te] = 0.0
            continue
        sc = StandardScaler().fit(features[tr])
        clf = LogisticRegression().fit(sc.transform(features[tr]), member[tr])
        scores[te] = clf.decision_function(sc.transform(features[te]))
    return scores


def _candidates(ctx: AuditContext):
    """The white-box candidates (subsampled members then non-members), their labels and patients; computed once."""
    if "whitebox_candidates" not in ctx.cache:
        sub_t, sub_h = ctx.whitebox_candidates()
        cand = Dataset.concat([sub_t, sub_h])
        member = np.r_[np.ones(len(sub_t), bool), np.zeros(len(sub_h), bool)]
        ctx.cache["whitebox_candidates"] = (cand, member, cand.patient_id.astype(str))
    return ctx.cache["whitebox_candidates"]


class _LossAttack(Attack):
    needs = ("loss",)

    def missing(self, ctx: AuditContext) -> str | None:
        if ctx.generator is None:
            return "no generator given (white-box attacks need --model)"
        if not getattr(getattr(ctx.generator, "tags", None), "has_loss", False):
            return "the generator has no loss (tags.has_loss is False)"
        return None


class LossAttack(_LossAttack):
    """Per-slice loss over a timestep grid with fixed noise (shares one network pass with ``fcre``)."""

    name = "loss"
    threat_model = "white-box (model weights, loss)"

    def evaluate(self, ctx: AuditContext) -> dict:
        why = self.missing(ctx)
        if why:
            return {"loss": skipped(why)}
        gen, cfg = ctx.generator, ctx.config
        cand, member, groups = _candidates(ctx)
        ts = audit_timesteps(gen, cfg.loss_timesteps)
        L = None
        later = cfg.attacks[cfg.attacks.index("loss") + 1:] if "loss" in cfg.attacks else ()
        if "fcre" in later and FCRE.applicable(gen) and getattr(gen, "loss_is_pair_mse", False):
            with ctx.steps("white-box loss + fcre"):  # one network pass per timestep serves both attacks
                L, ctx.cache["fcre_matrix"] = whitebox_matrices(gen, cand, loss_timesteps=ts, seed=ctx.seed,
                                                                fcre_timesteps=tuple(cfg.fcre_timesteps))
        with ctx.steps("white-box loss"):
            L = loss_matrix(gen, cand, timesteps=ts, seed=ctx.seed) if L is None else L
            res = evaluate_attack("loss", scores=loss_scores(L), member=member, groups=groups,
                                  info={"threat_model": self.threat_model, "timesteps": list(ts),
                                        "hook_precision": hook_precision(gen)}, **ctx.ev)
        return {"loss": res}


class FCRE(_LossAttack):
    """Legacy FCRE band-pass features, cross-fitted logistic regression (needs ``prediction_pair``)."""

    name = "fcre"
    threat_model = "white-box (legacy FCRE band-pass, cross-fitted logistic regression)"

    @staticmethod
    def applicable(generator) -> bool:
        return hasattr(generator, "prediction_pair")

    def missing(self, ctx: AuditContext) -> str | None:
        why = super().missing(ctx)
        if why is None and not self.applicable(ctx.generator):
            why = ("the generator does not expose prediction_pair(images, masks, t=, seed=) needed by the FCRE "
                   "band-pass feature")
        return why

    def evaluate(self, ctx: AuditContext) -> dict:
        why = self.missing(ctx)
        if why:
            return {"fcre": skipped(why)}
        cand, member, groups = _candidates(ctx)
        ts = tuple(ctx.config.fcre_timesteps)
        with ctx.steps("white-box fcre (legacy)"):
            F = ctx.cache.pop("fcre_matrix", None)
            F = fcre_features(ctx.generator, cand, timesteps=ts, seed=ctx.seed) if F is None else F
            res = evaluate_attack("fcre", scores=crossfit_logistic(F, member, groups, seed=ctx.seed), member=member,
                                  groups=groups, info={"threat_model": self.threat_model, "timesteps": list(ts),
                                                      "hook_precision": hook_precision(ctx.generator)}, **ctx.ev)
        return {"fcre": res}
