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

from ..data.dataset import STRUCTURES, Dataset
from ..errors import DataError, UsageError
from ..estimates import Estimate, bootstrap_mean_ci, skipped
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
    timings: dict = {}
    real_model = None
    spacing_assumed = False
    for r in regimes:
        needs_syn = r != "real"
        if needs_syn and (synthetic is None or len(synthetic) == 0):
            out[r] = skipped("no synthetic set was given")
            continue
        if r != "synthetic" and len(train) == 0:
            out[r] = skipped("no real training slices")
            continue
        ds = train if r == "real" else synthetic if r == "synthetic" else _mix(train, synthetic, mix_ratio, seed)
        seg, _, sc, fit_s = _train_and_score(ds, test, preset=preset, seed=seed, progress=progress,
                                             seg_params=segmenter_params, label=r)
        spacing_assumed |= sc.spacing_assumed
        timings[r] = fit_s
        out[r] = _regime_block(sc, ds, fit_s, seed=seed)
        if r == "real+synthetic":
            out[r]["mix_ratio"] = mix_ratio
        if r == "real":
            real_model = seg
    cv = skipped("cross-vendor evaluation disabled") if not cross_vendor else _cross_vendor(
        train=train, synthetic=synthetic, test=test, seed=seed, preset=preset, mix_ratio=mix_ratio,
        real_model=real_model, progress=progress, seg_params=segmenter_params, timings=timings)
    test_info = {"patients": int(len(np.unique(test.patient_id.astype(str)))), "slices": int(len(test))}
    return UtilityResult(out, cv, test_info, preset, float(mix_ratio), penalty, spacing_assumed, timings)


def utility_stage(ctx) -> dict:
    """``cmraudit run`` stage: the three regimes (+ cross-vendor) scored on the real test patients."""
    run_preset = getattr(ctx.config, "preset", "quick")
    preset = run_preset if run_preset in ("micro", "paper") else "quick"
    return evaluate_utility(train=ctx.train, synthetic=ctx.synthetic, test=ctx.test, seed=ctx.seed, preset=preset,
                            progress=ctx.progress, device=ctx.device).to_dict()


def _cross_vendor(
    *, train, synthetic, test, seed, preset, mix_ratio, real_model, progress, seg_params, timings
) -> dict:
    groups = vendor_groups(train, test)
    if groups is None:
        return skipped("vendors unknown or fewer than two vendors in the data")
    src, tgt = groups
    tr = train.subset(np.isin(train.vendor.astype(str), src))
    te = test.subset(np.isin(test.vendor.astype(str), tgt))
    if len(tr) == 0 or len(te) == 0:
        return skipped(f"no training slices of vendors {src} or no test slices of vendors {tgt}")
    res: dict = {"source_vendors": list(src), "target_vendors": list(tgt),
                 "test": {"patients": int(len(np.unique(te.patient_id.astype(str)))), "slices": int(len(te))}}
    regimes: dict = {}
    seg, _, sc, fit_s = _train_and_score(tr, te, preset=preset, seed=seed, progress=progress, seg_params=seg_params,
                                         label="real (cross-vendor)")
    timings["cross_vendor.real"] = fit_s
    regimes["real"] = _regime_block(sc, tr, fit_s, seed=seed)
    if synthetic is not None and len(synthetic):
        syn_t = synthetic.subset(np.isin(synthetic.vendor.astype(str), tgt))
    else:
        syn_t = None
    if syn_t is None or len(syn_t) == 0:
        regimes["real+synthetic"] = skipped(
            f"the synthetic set has no slices rendered in the style of vendors {'/'.join(tgt)} "
            "(needs a generator with vendor conditioning)")
    else:
        mixed = _mix(tr, syn_t, mix_ratio, seed)
        seg, _, sc, fit_s = _train_and_score(mixed, te, preset=preset, seed=seed, progress=progress,
                                             seg_params=seg_params, label="real+synthetic (cross-vendor)")
        timings["cross_vendor.real+synthetic"] = fit_s
        regimes["real+synthetic"] = _regime_block(sc, mixed, fit_s, seed=seed)
    if real_model is not None:
        pred = real_model.predict(np.asarray(te.images))
        sc = score_segmentation(
            pred=pred,
            gt=np.asarray(te.masks),
            patient_id=te.patient_id,
            annotated=te.annotated,
            spacing_mm=te.spacing_mm,
        )
        regimes["real_all_vendors"] = summarise_scores(sc, seed=seed)
    res["regimes"] = regimes
    return res
