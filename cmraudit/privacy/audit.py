"""The privacy audit: one front door, :func:`audit_privacy` (docs/design.md § 6).

Inputs: ``train`` (members), ``holdout`` (non-members from the same population; calibration
and reference), ``synthetic``, optionally the fitted ``generator`` (white-box attacks, shadow
models). The membership unit is the patient. Output: :class:`PrivacyResult`, whose
``to_dict()`` is the ``privacy`` section of report.json.

Feature spaces: every distance-based result is reported per space — ``pixel`` (area-
downsampled pixels; flipped views of the training set indexed with ``pixel_views="flips"``)
and ``domain`` (an encoder learned on train ∪ holdout, exactly flip invariant and trained to be
invariant to the training augmentations: rotations ≤ 20°, shifts ≤ 4 px, noise) and ``polar``
(weight-free polar-harmonic features around the intensity centroid: exactly invariant to flips
and rotations about the centroid, approximately to shifts). Invariance is obtained with
invariant embeddings (domain, polar), not by indexing augmented views (optional for pixel:
``pixel_views="flips"``); the optional ``registered`` space re-ranks domain candidates by a
pixel distance minimised over flips × rotations × shifts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.dataset import Dataset
from ..errors import DataError, UsageError
from ..estimates import skipped
from ..features import make_features
from ..progress import task as status_task
from .config import AuditConfig, ShadowConfig
from .copies import CopyResult, detect_copies, flip_views
from .copy_search import CopySearchParams, registered_copy_detection
from .masks import detect_mask_copies
from .mia.blackbox import crossfit_reference_folds
from .mia.interface import ATTACKS, AuditContext
from .mia.metrics import AttackResult
from .mia.shadow import shadow_lira
from .pairs import save_top_pairs, write_copy_flags_csv, write_per_slice_csv

#: report text of the ``registered`` space (the copy decision; not a FeatureSpace: it searches aligned pixels)
REGISTERED_SPACE = {
    "invariance": "dihedral group, rotations <= 20 deg, shifts <= 4 px at 64², intensity polynomials "
                  "(gamma, window/level, contrast); tolerant of noise, blur and mild elastic deformation",
    "candidates": "spectral embedding (weight-free)", "role": "the copy decision (default gate scope)"}


@dataclass
class PrivacyResult:
    """Result of :func:`audit_privacy`; ``to_dict()`` is the report's ``privacy`` section."""

    feature_spaces: dict[str, CopyResult]
    masks: dict
    mia: dict[str, Any]  # attack -> AttackResult | skipped dict
    info: dict = field(default_factory=dict)
    skipped_spaces: dict[str, dict] = field(default_factory=dict)  # space -> skipped entry (e.g. registered off)

    def to_dict(self) -> dict:
        return {
            "feature_spaces": {**{k: v.to_dict() for k, v in self.feature_spaces.items()}, **self.skipped_spaces},
            "masks": self.masks,
            "mia": {k: (v.to_dict() if isinstance(v, AttackResult) else v) for k, v in self.mia.items()},
            **self.info,
        }


class _Steps:
    def __init__(self, progress: bool):
        self.progress = progress
        self.timings: dict[str, float] = {}
        if progress:
            from rich.console import Console

            self.console = Console(stderr=True)

    def __call__(self, name: str):
        steps = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()
                if steps.progress:
                    steps.console.print(f"[dim]privacy:[/dim] {name} …")
                    status_task(name, 0)  # the CI status lines name the step (cmraudit/progress.py)

            def __exit__(self, *exc):
                steps.timings[name] = round(time.perf_counter() - self.t0, 3)

        return _Ctx()


def _check_inputs(train: Dataset, holdout: Dataset, synthetic: Dataset) -> None:
    problems = []
    for name, ds in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
        if ds is None or len(ds) == 0:
            problems.append(f"{name} is empty")
    if not problems:
        shapes = {n: d.shape for n, d in (("train", train), ("holdout", holdout), ("synthetic", synthetic))}
        if len(set(shapes.values())) > 1:
            problems.append(f"image sizes differ {shapes}; resample them to one size first")
        overlap = set(train.patient_id.astype(str)) & set(holdout.patient_id.astype(str))
        if overlap:
            shown = ", ".join(map(str, sorted(overlap)[:3]))
            problems.append(f"{len(overlap)} patient(s) are in both train and holdout (e.g. {shown}); "
                            "membership is per patient, so the splits must be patient-disjoint")
        if len(np.unique(holdout.patient_id.astype(str))) < 2:
            problems.append("holdout needs at least 2 patients (reference sets are cross-fitted by patient)")
    if problems:
        raise DataError("privacy audit inputs: " + "; ".join(problems))


def _fit_space(spec, *, config: AuditConfig, pool_images: np.ndarray, seed: int):
    """A fitted extractor for a space name (the audit's own knobs for pixel and domain) or object."""
    if isinstance(spec, str):
        params = {"pixel": {"size": config.pixel_size}, "domain": config.domain_params}.get(spec, {})
        fx = make_features(spec, **params)
    else:
        fx = spec
    if getattr(fx, "fitted_", None) is None and getattr(fx, "model_", None) is None:
        fx.fit(pool_images, seed=seed)
    return fx


def _embed(ctx: AuditContext, spec, pool: np.ndarray) -> tuple[str, np.ndarray, dict]:
    """Fit one space, embed train / holdout / synthetic into ``ctx.feats``; (name, training index, space info)."""
    config, train = ctx.config, ctx.train
    name = spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)
    fx = _fit_space(spec, config=config, pool_images=pool, seed=ctx.seed)
    f_t, f_h, f_s = (fx.transform_images(np.asarray(d.images)) for d in (train, ctx.holdout, ctx.synthetic))
    ctx.feats[name] = (f_t, f_h, f_s)
    views = config.pixel_views if name == "pixel" else (config.domain_views if name == "domain" else "none")
    invariance = getattr(fx, "invariance", "unknown")
    if name == "pixel" and views == "flips":
        invariance = "flipped views of the training set indexed"
    f_index = f_t
    if views == "flips":
        f_index = np.concatenate([fx.transform_images(np.ascontiguousarray(v)) for v in flip_views(train.images)])
    info = {"params": fx.get_params() if hasattr(fx, "get_params") else {}, "dim": int(f_t.shape[1]),
            "views": views, "invariance": invariance}
    if hasattr(fx, "train_seconds_"):
        info["encoder_train_seconds"] = round(float(fx.train_seconds_), 3)
    return name, f_index, info


def _save(res: CopyResult, art: Path | None, name: str, ctx: AuditContext, title: str) -> None:
    if art is not None:
        write_per_slice_csv(res.per_slice, art / f"per_slice_{name}.csv")
        save_top_pairs(synthetic_images=np.asarray(ctx.synthetic.images), train_images=ctx.train.images,
                       per_slice=res.per_slice, path=art / f"top_pairs_{name}.png", k=ctx.config.top_k_pairs,
                       title=title)


def _copy_searches(ctx: AuditContext, features: Sequence, art: Path | None):
    """Fit every feature space (``ctx.feats``), search copies in each, then the registered search."""
    config, train, holdout, synthetic, steps = ctx.config, ctx.train, ctx.holdout, ctx.synthetic, ctx.steps
    pool = np.concatenate([np.asarray(train.images), np.asarray(holdout.images)])
    spaces: dict[str, CopyResult] = {}
    skipped_spaces: dict[str, dict] = {}
    for spec in features:
        name = spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)
        with steps(f"features {name}"):
            name, f_index, space_info = _embed(ctx, spec, pool)
        if not config.copy_search:
            continue
        with steps(f"copy search {name}"):
            f_t, f_h, f_s = ctx.feats[name]
            res = detect_copies(
                train_feats=f_index, holdout_feats=f_h, synthetic_feats=f_s, train_patients=train.patient_id,
                space=name, holdout_patients=holdout.patient_id, alpha=config.alpha,
                n_views=4 if space_info["views"] == "flips" else 1, carlini_k=config.carlini_k,
                carlini_alpha=config.carlini_alpha, legacy_nndr=config.legacy_nndr, legacy_gu=config.legacy_gu,
                hist_bins=config.hist_bins, seed=ctx.seed, confidence=config.confidence, top_k=config.top_k_pairs,
                reverse=ctx.cache.setdefault("nearest_synthetic", {}).setdefault(name, {}),
            )
            res.copy_detection["space"] = space_info
            spaces[name] = res
            _save(res, art, name, ctx, f"closest pairs, {name} space")
    n_all = len(synthetic) + len(holdout) + len(train)
    use_registered = config.registered
    if use_registered is None:  # auto: on unless the audit is larger than the registered search's cost guard
        use_registered = n_all <= config.registered_max_queries
    if config.copy_search and use_registered:
        with steps("copy search registered"):
            params = CopySearchParams(alpha=config.copy_alpha, margin=config.copy_margin, **config.registered_params)
            res = registered_copy_detection(train, holdout, synthetic, params=params, seed=ctx.seed,
                                            hist_bins=config.hist_bins, top_k=config.top_k_pairs)
            res.copy_detection["space"] = dict(REGISTERED_SPACE)
            spaces["registered"] = res
            _save(res, art, "registered", ctx, "closest pairs, registered")
    elif config.copy_search:
        why = ("switched off (AuditConfig(registered=False))" if config.registered is False else
               f"{n_all} slices exceed registered_max_queries={config.registered_max_queries} "
               "(set registered=True to force it)")
        skipped_spaces["registered"] = skipped(f"registered copy search (the copy decision) not run: {why}")
    for res in spaces.values():  # every space names its flagged slices: the HTML report withholds them
        res.copy_detection["flagged_indices"] = [int(i) for i in np.flatnonzero(res.per_slice["copy"])]
    if art is not None and spaces:
        write_copy_flags_csv({k: v.per_slice["copy"] for k, v in spaces.items()}, art / "per_slice_copies.csv")
    return spaces, skipped_spaces


def audit_privacy(
    *,
    train: Dataset,
    holdout: Dataset,
    synthetic: Dataset,
    generator=None,
    features: Sequence = ("pixel", "domain"),
    seed: int,
    config: AuditConfig | None = None,
    out_dir=None,
    progress: bool = True,
    shadow: ShadowConfig | None = None,
    reference: Dataset | None = None,
) -> PrivacyResult:
    """Run copy detection, memorisation and membership inference; see the module docstring.

    ``features``: names of registered feature spaces (``pixel``, ``domain``, …) or fitted/unfitted extractor
    objects. ``config.attacks``: names of registered attacks (``cmraudit.privacy.mia.interface.ATTACKS``), each
    run by its ``evaluate``. ``reference``: real patients disjoint from train and holdout (e.g. the test split),
    used only by offline LiRA shadows. ``out_dir``: when given, per-slice tables and top-k pair images go to
    ``out_dir/privacy/`` (they show real slices: keep them local).
    """
    config = config or AuditConfig()
    if not features:
        raise UsageError("features must name at least one feature space (pixel, domain)")
    _check_inputs(train, holdout, synthetic)
    attacks = [ATTACKS.make(name) for name in config.attacks]
    steps = _Steps(progress)
    art = None
    if out_dir is not None:
        art = Path(out_dir) / "privacy"
        art.mkdir(parents=True, exist_ok=True)
    ctx = AuditContext(train=train, holdout=holdout, synthetic=synthetic, generator=generator, seed=seed,
                       config=config, steps=steps, shadow=shadow, reference=reference, out_dir=out_dir)
    spaces, skipped_spaces = _copy_searches(ctx, features, art)
    masks: dict = skipped("mask audit disabled (config.masks=False)")
    if config.masks:
        with steps("mask copy search"):
            masks = detect_mask_copies(train=train, holdout=holdout, synthetic=synthetic, alpha=config.alpha,
                                       size=config.mask_size, dice_threshold=config.legacy_mask_dice, seed=seed,
                                       confidence=config.confidence, hist_bins=config.hist_bins)
    ctx.folds = crossfit_reference_folds(holdout.patient_id, train.patient_id, seed=seed)
    mia: dict[str, Any] = {}
    for attack in attacks:  # every configured part, by name, in the order given
        mia.update(attack.evaluate(ctx))
    mia.update(shadow_lira(ctx))
    info = {
        "config": config.to_dict(),
        "seed": seed,
        "data": {n: {"patients": int(len(np.unique(d.patient_id.astype(str)))), "slices": int(len(d))}
                 for n, d in (("train", train), ("holdout", holdout), ("synthetic", synthetic))},
        "timings_s": steps.timings,
        "artefacts": None if art is None else str(art),
        "notes": [e["reason"] for e in skipped_spaces.values()],
    }
    return PrivacyResult(feature_spaces=spaces, masks=masks, mia=mia, info=info, skipped_spaces=skipped_spaces)
