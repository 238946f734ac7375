"""Front door of the utility stage: does synthetic data train a segmenter that works on real patients?

Regimes (each trains one :class:`~cmraudit.utility.segmentation.Segmenter` from scratch):

- ``real`` — the real training patients;
- ``synthetic`` — the synthetic set only;
- ``real+synthetic`` — the real training slices plus ``mix_ratio`` × as many synthetic slices
  (drawn without replacement, seeded; all of them when fewer exist).

Each is scored on the held-out real ``test`` patients: Dice, IoU, HD95 (mm) and ASD (mm) per
structure (RV, MYO, LV; background excluded; missed structure = image-diagonal penalty), see
:mod:`cmraudit.utility.metrics`. Values are means over test patients; intervals are 95 %
percentile intervals from 1000 bootstrap resamples of patients (unit ``patient``).

Cross-vendor (when the real data carry vendors A–D, or at least two vendors): train on the
source vendors (A/B; else the first half of the sorted vendors), test on the target vendors
(C/D; else the second half) of the test patients: ``real`` (source only), ``real+synthetic``
(source + synthetic slices whose vendor is a target vendor, i.e. rendered in the target style
by a vendor-conditioned generator; skipped otherwise), plus ``real_all_vendors`` (the ``real``
regime's model, trained on every vendor, scored on the same target patients) as the ceiling.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..cpu import map_side_by_side, side_by_side_lanes
from ..data.dataset import STRUCTURES, Dataset
from ..device import select_device
from ..errors import DataError, UsageError
from ..estimates import Estimate, bootstrap_mean_ci, skipped
from ..generators.progress import progress_bar
from .metrics import PatientScores, missed_penalty_mm, score_segmentation
from .segmentation import PRESETS, Segmenter

REGIMES = ("real", "synthetic", "real+synthetic")
_METRICS = (("dice", "dice"), ("iou", "iou"), ("hd95_mm", "hd95_mm"), ("asd_mm", "asd_mm"))


@dataclass
class UtilityResult:
    """Segmentation utility per regime; ``to_dict()`` is the report's ``utility`` section."""

    regimes: dict
    cross_vendor: dict
    test: dict
    preset: str
    mix_ratio: float
    missed_structure_penalty_mm: float
    spacing_assumed: bool
    timings_s: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "regimes": self.regimes,
            "cross_vendor": self.cross_vendor,
            "test": self.test,
            "preset": self.preset,
            "mix_ratio": self.mix_ratio,
            "missed_structure_penalty_mm": self.missed_structure_penalty_mm,
            "spacing_assumed": self.spacing_assumed,
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
        }


def _boot(values: np.ndarray, *, seed: int, unit_name: str) -> dict:
    ok = np.isfinite(values)
    if not ok.any():
        return skipped("structure not annotated / not present in any test patient")
    v = values[ok]
    ci = bootstrap_mean_ci(v, np.ones(len(v)), seed=seed)
    d = Estimate(value=float(v.mean()), ci=ci, n=int(len(v)), unit="patient", method="patient-bootstrap").to_dict()
    if unit_name:
        d["unit_of_value"] = unit_name
    return d


def summarise_scores(scores: PatientScores, *, seed: int) -> dict:
    """Per-structure Estimates (patient bootstrap) of Dice, IoU, HD95, ASD and the mean Dice over structures."""
    out: dict = {}
    for key, attr in _METRICS:
        arr = getattr(scores, attr)
        unit = "mm" if key.endswith("_mm") else ""
        out[key] = {s: _boot(arr[:, i], seed=seed, unit_name=unit) for i, s in enumerate(STRUCTURES)}
    with np.errstate(all="ignore"):
        mean_dice = np.nanmean(scores.dice, axis=1) if scores.dice.size else np.empty(0)
        mean_hd = np.nanmean(scores.hd95_mm, axis=1) if scores.hd95_mm.size else np.empty(0)
    out["mean_dice"] = _boot(mean_dice, seed=seed, unit_name="")
    out["mean_hd95_mm"] = _boot(mean_hd, seed=seed, unit_name="mm")
    out["n_test_patients"] = int(len(scores.patients))
    return out


def _train_and_score(train: Dataset, test: Dataset, *, preset: str, seed: int, progress: bool, seg_params: dict,
                     label: str = ""):
    t0 = time.perf_counter()
    try:
        seg = Segmenter(preset=preset, **seg_params)
    except TypeError as e:
        raise UsageError(
            f"segmenter options {sorted(seg_params)} not understood ({e}); expected iterations, batch_size, filters, "
            "lr, flips, device"
        ) from e
    seg.fit(train, seed=seed, progress=progress, desc=f"segmenter trained on {label}" if label else "segmentation")
    fit_s = time.perf_counter() - t0
    pred = seg.predict(np.asarray(test.images))
    sc = score_segmentation(pred=pred, gt=np.asarray(test.masks), patient_id=test.patient_id,
                            annotated=test.annotated, spacing_mm=test.spacing_mm)
    return seg, pred, sc, fit_s


def _regime_block(sc: PatientScores, train: Dataset, fit_s: float, *, seed: int) -> dict:
    d = summarise_scores(sc, seed=seed)
    d["train_slices"] = int(len(train))
    d["train_patients"] = int(len(np.unique(train.patient_id.astype(str))))
    d["train_time_s"] = round(fit_s, 2)
    return d


def _mix(train: Dataset, synthetic: Dataset, ratio: float, seed: int) -> Dataset:
    k = int(round(ratio * len(train)))
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(synthetic), size=min(k, len(synthetic)), replace=False)
    return Dataset.concat([train, synthetic.subset(np.sort(idx))])


def vendor_groups(train: Dataset, test: Dataset) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(source vendors, target vendors) for the cross-vendor test, or None when vendors are unknown."""
    vt = sorted({str(v) for v in train.vendor if str(v)})
    vs = sorted({str(v) for v in test.vendor if str(v)})
    if {"A", "B"} <= set(vt) and {"C", "D"} & set(vs):
        return ("A", "B"), tuple(v for v in ("C", "D") if v in vs)
    allv = sorted(set(vt) | set(vs))
    if len(allv) < 2:
        return None
    half = len(allv) // 2
    src, tgt = tuple(allv[:half]), tuple(allv[half:])
    if not (set(src) & set(vt)) or not (set(tgt) & set(vs)):
        return None
    return src, tgt


def evaluate_utility(
    *,
    train: Dataset,
    synthetic: Dataset | None,
    test: Dataset,
    seed: int,
    preset: str = "quick",
    regimes=REGIMES,
    mix_ratio: float = 1.0,
    cross_vendor: bool = True,
    progress: bool = True,
    **segmenter_params,
) -> UtilityResult:
    """Train a segmenter per regime and score it on the real ``test`` patients (see module doc)."""
    bad = [r for r in regimes if r not in REGIMES]
    if bad:
        raise UsageError(f"unknown utility regime(s) {bad}; expected some of {', '.join(REGIMES)}")
    if preset not in PRESETS:
        raise UsageError(f"utility preset {preset!r} is unknown; expected one of {', '.join(PRESETS)}")
    if not mix_ratio > 0:
        raise UsageError(f"mix_ratio must be > 0 (synthetic slices per real slice), got {mix_ratio}")
    if len(test) == 0:
        raise DataError("utility needs a non-empty real test set")
    for name, ds in (("train", train), ("synthetic", synthetic)):
        if ds is not None and len(ds) and tuple(ds.shape) != tuple(test.shape):
            raise DataError(
                f"{name} slices are {tuple(ds.shape)} but test slices {tuple(test.shape)}; prepare all at one size"
            )
    sp = np.where(np.isfinite(test.spacing_mm), test.spacing_mm, 1.0)
    penalty = missed_penalty_mm(test.shape, tuple(sp.max(axis=0)))
    out: dict = {}
    jobs: list[tuple[str, Dataset, Dataset, str]] = []  # (timing key, training set, test set, label)
    for r in regimes:
        needs_syn = r != "real"
        if needs_syn and (synthetic is None or len(synthetic) == 0):
            out[r] = skipped("no synthetic set was given")
        elif r != "synthetic" and len(train) == 0:
            out[r] = skipped("no real training slices")
        else:
            ds = train if r == "real" else synthetic if r == "synthetic" else _mix(train, synthetic, mix_ratio, seed)
            jobs.append((r, ds, test, r))
    cv = skipped("cross-vendor evaluation disabled") if not cross_vendor else _cross_vendor_plan(
        train=train, synthetic=synthetic, test=test, seed=seed, mix_ratio=mix_ratio, jobs=jobs)
    results = _fit_all(jobs, preset=preset, seed=seed, progress=progress, seg_params=segmenter_params)
    timings = {key: res[3] for key, res in results.items()}
    spacing_assumed = any(res[2].spacing_assumed for key, res in results.items() if key in REGIMES)
    for key, ds, _, _ in jobs:
        if key in REGIMES:
            out[key] = _regime_block(results[key][2], ds, results[key][3], seed=seed)
            if key == "real+synthetic":
                out[key]["mix_ratio"] = mix_ratio
    out = {r: out[r] for r in regimes}
    if isinstance(cv, dict) and "regimes" in cv:
        _cross_vendor_blocks(cv, jobs, results, seed=seed)
    test_info = {"patients": int(len(np.unique(test.patient_id.astype(str)))), "slices": int(len(test))}
    return UtilityResult(out, cv, test_info, preset, float(mix_ratio), penalty, spacing_assumed, timings)


def _fit_all(jobs, *, preset, seed, progress, seg_params) -> dict:
    """Train and score every job's segmenter: side by side on a CPU with two or more threads (one torch thread each,
    cmraudit.cpu.map_side_by_side), else one after the other. Key → (segmenter, prediction, scores, fit seconds)."""
    lanes = side_by_side_lanes(select_device(seg_params.get("device", "auto")), len(jobs))
    with progress_bar("utility segmenters", total=len(jobs), enabled=progress and lanes > 1) as bar:
        done = map_side_by_side(
            lambda job: _train_and_score(job[1], job[2], preset=preset, seed=seed, progress=progress,
                                         seg_params=seg_params, label=job[3]),
            jobs, lanes=lanes, on_done=lambda: bar.advance(1))
    return {job[0]: res for job, res in zip(jobs, done)}


def utility_stage(ctx) -> dict:
    """``cmraudit run`` stage: the three regimes (+ cross-vendor) scored on the real test patients."""
    run_preset = getattr(ctx.config, "preset", "quick")
    preset = run_preset if run_preset in ("micro", "paper") else "quick"
    return evaluate_utility(train=ctx.train, synthetic=ctx.synthetic, test=ctx.test, seed=ctx.seed, preset=preset,
                            progress=ctx.progress, device=ctx.device).to_dict()


def _cross_vendor_plan(*, train, synthetic, test, seed, mix_ratio, jobs) -> dict:
    """The cross-vendor section's frame; appends its segmenters to ``jobs`` (keys ``cross_vendor.*``)."""
    groups = vendor_groups(train, test)
    if groups is None:
        return skipped("vendors unknown or fewer than two vendors in the data")
    src, tgt = groups
    tr = train.subset(np.isin(train.vendor.astype(str), src))
    te = test.subset(np.isin(test.vendor.astype(str), tgt))
    if len(tr) == 0 or len(te) == 0:
        return skipped(f"no training slices of vendors {src} or no test slices of vendors {tgt}")
    res: dict = {"source_vendors": list(src), "target_vendors": list(tgt),
                 "test": {"patients": int(len(np.unique(te.patient_id.astype(str)))), "slices": int(len(te))},
                 "regimes": {}}
    jobs.append(("cross_vendor.real", tr, te, "real (cross-vendor)"))
    syn_t = None
    if synthetic is not None and len(synthetic):
        syn_t = synthetic.subset(np.isin(synthetic.vendor.astype(str), tgt))
    if syn_t is None or len(syn_t) == 0:
        res["regimes"]["real+synthetic"] = skipped(
            f"the synthetic set has no slices rendered in the style of vendors {'/'.join(tgt)} "
            "(needs a generator with vendor conditioning)")
    else:
        jobs.append(("cross_vendor.real+synthetic", _mix(tr, syn_t, mix_ratio, seed), te,
                     "real+synthetic (cross-vendor)"))
    return res


def _cross_vendor_blocks(res: dict, jobs, results: dict, *, seed: int) -> None:
    """Fill the cross-vendor regimes from the trained segmenters (``real_all_vendors``: the ``real`` regime's model
    scored on the target vendors' test patients)."""
    regimes = res["regimes"]
    te = None
    for key, ds, test, _ in jobs:
        if key.startswith("cross_vendor."):
            regimes[key.split(".", 1)[1]] = _regime_block(results[key][2], ds, results[key][3], seed=seed)
            te = test
    res["regimes"] = {k: regimes[k] for k in ("real", "real+synthetic") if k in regimes}
    if "real" in results and te is not None:
        pred = results["real"][0].predict(np.asarray(te.images))
        sc = score_segmentation(pred=pred, gt=np.asarray(te.masks), patient_id=te.patient_id,
                                annotated=te.annotated, spacing_mm=te.spacing_mm)
        res["regimes"]["real_all_vendors"] = summarise_scores(sc, seed=seed)
