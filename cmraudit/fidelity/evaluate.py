"""Front door of the fidelity stage: distribution metrics per feature space, paired metrics,
diversity and mask plausibility → the report's ``fidelity`` section.

``real`` is the real reference set (in ``cmraudit run``: the held-out *test* patients) and
``paired`` (optional) the images generated from ``real``'s masks, row i ↔ real slice i.
A metric that cannot be computed is ``{"status": "skipped", "reason": ...}`` — never a number.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..data.dataset import Dataset
from ..errors import DataError, UsageError
from ..estimates import Estimate, bootstrap_mean_ci, rate_estimate, skipped
from ..features import extract_features
from ..features.inception import InceptionFeatures, find_inception_weights
from ..features.radiomic import RadiomicFeatures
from ..progress import end_task, lines_mode, update
from ..progress import task as status_task
from .diversity import evaluate_diversity
from .frechet import compute_frechet_distance
from .kid import compute_kid
from .masks import evaluate_mask_plausibility
from .paired import compute_ms_ssim, compute_psnr, compute_ssim
from .prdc import compute_prdc

SPACES = ("pixel", "radiomic", "domain", "inception")
NO_MASKS = "the synthetic set has no masks (image-only import): mask-based metrics need them"


@dataclass
class FidelityResult:
    """Fidelity of a synthetic set; ``to_dict()`` is the report's ``fidelity`` section."""

    distribution: dict
    paired: dict
    diversity: dict
    mask_plausibility: dict
    timings_s: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "distribution": self.distribution,
            "paired": self.paired,
            "diversity": self.diversity,
            "mask_plausibility": self.mask_plausibility,
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
        }


def _features(space: str, *, real, synthetic, pool, extractors, seed: int, progress: bool, pixel_size: int | None = 16):
    """(real_features, synthetic_features, description) or raises a _Skip."""
    if extractors and space in extractors:
        fx = extractors[space]
        tf = fx.transform if space == "radiomic" else (lambda d: fx.transform_images(d.images))
        return tf(real), tf(synthetic), getattr(fx, "get_params", dict)()
    if space == "radiomic":
        fx = RadiomicFeatures()
        return fx.fit_transform(real), fx.transform(synthetic), {"z_scored_on": "real"}
    if space == "inception":
        path, reason = find_inception_weights()
        if path is None:
            raise _Skip(reason)
        fx = InceptionFeatures().fit()
        return fx.transform(real), fx.transform(synthetic), {"weights": path.name}
    if space == "domain":
        try:
            fr, fs = extract_features(
                "domain", real, synthetic, pool=pool if pool is not None else real, seed=seed, progress=progress
            )
        except UsageError as e:
            raise _Skip(f"domain encoder not available ({e})") from e
        return fr, fs, {"pool": "given" if pool is not None else "real"}
    fr, fs = extract_features(space, real, synthetic, seed=seed, progress=progress, size=pixel_size)
    return fr, fs, {"size": pixel_size}


class _Skip(Exception):
    pass


class _Steps:
    """A transient rich progress bar over the fidelity steps (no output when disabled)."""

    def __init__(self, total: int, *, enabled: bool):
        self._p = None
        self.enabled = enabled
        if enabled:
            status_task("fidelity", total)
        if enabled and not lines_mode():  # without a terminal: status lines (cmraudit/progress.py)
            from rich.progress import Progress

            self._p = Progress(transient=True)
            self._p.start()
            self._task = self._p.add_task("fidelity", total=total)
            self._started = False

    def step(self, description: str) -> None:
        if self.enabled:
            update(desc=description)
        if self._p is not None:
            self._p.update(self._task, advance=1 if self._started else 0, description=description)
            self._started = True

    def close(self) -> None:
        if self.enabled:
            end_task()
        if self._p is not None:
            self._p.stop()


def distribution_metrics(real_f: np.ndarray, syn_f: np.ndarray, *, seed: int, nearest_k: int = 5,
                         kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict:
    """FD, KID and PRDC on one feature space (see the modules for definitions and units)."""
    real_f = np.asarray(real_f, dtype=np.float64)
    syn_f = np.asarray(syn_f, dtype=np.float64)
    n_r, n_s = len(real_f), len(syn_f)
    out: dict = {"n_real": n_r, "n_synthetic": n_s, "dim": int(real_f.shape[1])}
    if min(n_r, n_s) < 2:
        reason = f"distribution metrics need ≥ 2 slices per set, got {n_r} real and {n_s} synthetic"
        return {
            **out,
            **{k: skipped(reason) for k in ("frechet_distance", "kid", "precision", "recall", "density", "coverage")},
        }
    out["frechet_distance"] = Estimate(
        value=compute_frechet_distance(real_f, syn_f), ci=None, n=min(n_r, n_s), unit="slice"
    ).to_dict()
    if min(n_r, n_s) >= 4:
        kid = compute_kid(real_f, syn_f, n_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
        out["kid"] = Estimate(
            value=kid.value, ci=kid.ci, n=kid.subset_size, unit="slice", method=f"{kid.n_subsets} subsets"
        ).to_dict()
    else:
        out["kid"] = skipped(f"KID needs ≥ 4 slices per set, got {n_r} real and {n_s} synthetic")
    if min(n_r, n_s) > nearest_k:
        p = compute_prdc(real_f, syn_f, nearest_k=nearest_k)
        out["precision"] = rate_estimate(int(p.per_synthetic_in_real.sum()), n_s, unit="slice").to_dict()
        out["recall"] = rate_estimate(int(p.per_real_in_synthetic.sum()), n_r, unit="slice").to_dict()
        out["coverage"] = rate_estimate(int(p.per_real_covered.sum()), n_r, unit="slice").to_dict()
        d = p.per_synthetic_count / nearest_k
        half = 1.96 * d.std(ddof=1) / np.sqrt(n_s)
        out["density"] = Estimate(
            value=p.density, ci=(max(0.0, p.density - half), p.density + half), n=n_s, unit="slice", method="normal"
        ).to_dict()
        out["nearest_k"] = nearest_k
    else:
        for k in ("precision", "recall", "density", "coverage"):
            out[k] = skipped(f"PRDC with k={nearest_k} needs more than {nearest_k} slices per set")
    return out


def _paired_estimate(values: np.ndarray, groups: np.ndarray, *, seed: int, unit_name: str) -> dict:
    ok = np.isfinite(values)
    v, g = values[ok], groups[ok]
    if len(v) == 0:
        return skipped("no finite values")

    _, inv = np.unique(g, return_inverse=True)
    ci = bootstrap_mean_ci(np.bincount(inv, weights=v), np.bincount(inv), seed=seed)
    d = Estimate(
        value=float(v.mean()), ci=ci, n=len(np.unique(g)), unit="patient", method="patient-bootstrap"
    ).to_dict()
    d["unit_of_value"] = unit_name
    return d


def paired_metrics(*, real, paired, seed: int, lpips_weights=None, lpips_net: str = "vgg") -> dict:
    """PSNR (dB), SSIM, MS-SSIM and LPIPS of ``paired`` images vs ``real`` images, slice i ↔ i."""
    from .lpips_local import compute_lpips, find_lpips_weights, load_lpips

    if len(paired) != len(real) or tuple(paired.shape) != tuple(real.shape):
        raise DataError(
            f"paired set has {len(paired)} slices of {tuple(paired.shape)} but the real set has {len(real)} of "
            f"{tuple(real.shape)}; "
            "paired images must be generated from the real set's masks, row i ↔ real slice i"
        )
    x, y = np.asarray(paired.images), np.asarray(real.images)
    _, groups = real.patient_codes()
    out = {
        "psnr": _paired_estimate(compute_psnr(x, y), groups, seed=seed, unit_name="dB"),
        "ssim": _paired_estimate(compute_ssim(x, y), groups, seed=seed, unit_name="ssim"),
        "ms_ssim": _paired_estimate(compute_ms_ssim(x, y), groups, seed=seed, unit_name="ms-ssim"),
    }
    path, reason = find_lpips_weights(net=lpips_net, weights=lpips_weights)
    if path is None:
        out["lpips"] = skipped(reason)
    else:
        model = load_lpips(path, net=lpips_net)
        out["lpips"] = _paired_estimate(
            compute_lpips(x, y, model=model), groups, seed=seed, unit_name=f"lpips-{lpips_net}"
        )
    return out


def _paired_rows(real, paired):
    """The real slices the paired set was generated from: all of ``real``, or the rows listed in
    ``paired.meta["test_rows"]`` (as written by ``cmraudit run`` when only some test masks are re-rendered)."""
    rows = (paired.meta or {}).get("test_rows")
    if rows is not None and len(rows) == len(paired) and len(paired) != len(real):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.min(initial=0) < 0 or rows.max(initial=0) >= len(real):
            raise DataError(f"paired set lists test_rows outside 0..{len(real) - 1}")
        return real.subset(rows)
    return real


def fidelity_stage(ctx) -> dict:
    """``cmraudit run`` stage: fidelity of ``ctx.synthetic`` against the real test patients."""
    pool = Dataset.concat([ctx.train, ctx.holdout]) if len(ctx.holdout) else ctx.train
    return evaluate_fidelity(real=ctx.test, synthetic=ctx.synthetic, paired=ctx.synthetic_paired, pool=pool,
                             seed=ctx.seed, progress=ctx.progress).to_dict()


def evaluate_fidelity(
    *,
    real,
    synthetic,
    paired=None,
    features=("pixel", "radiomic", "domain"),
    seed: int,
    pool=None,
    extractors: dict | None = None,
    lpips_weights=None,
    pixel_size: int | None = 16,
    diversity_pairs: int = 500,
    progress: bool = True,
    masks: bool = True,
) -> FidelityResult:
    """Fidelity of ``synthetic`` against ``real`` (and of ``paired`` against ``real`` slice by slice).

    ``features``: spaces for the distribution metrics (``pixel``, ``radiomic``, ``domain``,
    ``inception`` — the last only with local weights). ``pool``: data the domain encoder may be
    trained on (train ∪ holdout; default ``real``). ``extractors``: already fitted extractors by
    space name (e.g. from the privacy stage) to reuse instead of fitting again. ``pixel_size``:
    the pixel space is area-downsampled to this size² (default 16² = 256-d, so the covariance
    of a few hundred slices is not hopelessly rank deficient; ``None`` = native). ``lpips_weights``:
    path of the LPIPS backbone state dict (else ``CMRAUDIT_LPIPS_WEIGHTS`` / the torch hub cache).
    ``masks=False`` (an image-only synthetic set): the mask-based radiomic space and mask
    plausibility are ``skipped`` with that reason instead of being computed on empty masks.
    """
    bad = [f for f in features if f not in SPACES]
    if bad:
        raise UsageError(f"unknown feature space(s) {bad}; expected some of {', '.join(SPACES)}")
    if len(real) == 0 or len(synthetic) == 0:
        raise DataError(f"fidelity needs non-empty sets, got {len(real)} real and {len(synthetic)} synthetic slices")
    if tuple(real.shape) != tuple(synthetic.shape):
        raise DataError(
            f"real slices are {tuple(real.shape)} but synthetic ones {tuple(synthetic.shape)}; prepare both at one size"
        )
    timings: dict = {}
    dist: dict = {}
    bar = _Steps(len(features) + 3, enabled=progress)
    try:
        for space in features:
            bar.step(f"fidelity: {space} features")
            if space == "radiomic" and not masks:
                dist[space] = skipped(NO_MASKS)
                continue
            t0 = time.perf_counter()
            try:
                # progress=False inside: only one rich live display may be active at a time
                fr, fs, info = _features(
                    space,
                    real=real,
                    synthetic=synthetic,
                    pool=pool,
                    extractors=extractors,
                    seed=seed,
                    progress=False,
                    pixel_size=pixel_size,
                )
            except _Skip as e:
                dist[space] = skipped(str(e))
                continue
            dist[space] = distribution_metrics(fr, fs, seed=seed)
            if info:
                dist[space]["features"] = info
            timings[f"distribution.{space}"] = time.perf_counter() - t0
        bar.step("fidelity: paired metrics")
        t0 = time.perf_counter()
        if paired is None:
            pm = skipped("no paired set (images generated from the real test masks) was given")
        else:
            pm = paired_metrics(real=_paired_rows(real, paired), paired=paired, seed=seed, lpips_weights=lpips_weights)
        timings["paired"] = time.perf_counter() - t0
        bar.step("fidelity: diversity")
        t0 = time.perf_counter()
        div = evaluate_diversity(real=real, synthetic=synthetic, n_pairs=diversity_pairs, seed=seed)
        timings["diversity"] = time.perf_counter() - t0
        bar.step("fidelity: mask plausibility")
        t0 = time.perf_counter()
        mp = evaluate_mask_plausibility(real=real, synthetic=synthetic) if masks else skipped(NO_MASKS)
        timings["mask_plausibility"] = time.perf_counter() - t0
    finally:
        bar.close()
    return FidelityResult(distribution=dist, paired=pm, diversity=div, mask_plausibility=mp, timings_s=timings)
