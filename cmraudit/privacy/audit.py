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
from .masks import detect_mask_copies
from .mia.blackbox import crossfit_reference_folds, domias_scores, gan_leaks_scores
from .mia.metrics import AttackResult, evaluate_attack


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
            problems.append(f"{len(overlap)} patient(s) are in both train and holdout (e.g. {sorted(overlap)[:3]}); "
                            "membership is per patient, so the splits must be patient-disjoint")
        if len(np.unique(holdout.patient_id.astype(str))) < 2:
            problems.append("holdout needs at least 2 patients (reference sets are cross-fitted by patient)")
    if problems:
        raise DataError("privacy audit inputs: " + "; ".join(problems))


def _space_name(spec) -> str:
    return spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)


def _fit_space(spec, *, config: AuditConfig, pool_images: np.ndarray, seed: int):
    if isinstance(spec, str):
        if spec == "pixel":
            fx = make_features("pixel", size=config.pixel_size)
        elif spec == "domain":
            fx = make_features("domain", **config.domain_params)
        else:
            fx = make_features(spec)
    else:
        fx = spec
    if getattr(fx, "fitted_", None) is None and getattr(fx, "model_", None) is None:
        fx.fit(pool_images, seed=seed)
    return fx


def _subsample_patients(ds: Dataset, cap: int, seed: int) -> Dataset:
    if len(ds) <= cap:
        return ds
    rng = np.random.default_rng(seed)
    pats = np.unique(ds.patient_id.astype(str))
    rng.shuffle(pats)
    per = max(1, int(round(len(ds) / len(pats))))
    keep = pats[: max(1, cap // per)]
    return ds.select_patients(keep)


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

    ``features``: names (``pixel``, ``domain``) or fitted/unfitted extractor objects.
    ``reference``: real patients disjoint from train and holdout (e.g. the test split), used
    only by offline LiRA shadows. ``out_dir``: when given, per-slice tables and top-k pair
    images go to ``out_dir/privacy/`` (they show real slices: keep them local).
    """
    config = config or AuditConfig()
    if not features:
        raise UsageError("features must name at least one feature space (pixel, domain)")
    _check_inputs(train, holdout, synthetic)
    steps = _Steps(progress)
    art = None
    if out_dir is not None:
        art = Path(out_dir) / "privacy"
        art.mkdir(parents=True, exist_ok=True)
    pool = np.concatenate([np.asarray(train.images), np.asarray(holdout.images)])
    spaces: dict[str, CopyResult] = {}
    info_notes: list[str] = []
    skipped_spaces: dict[str, dict] = {}
    feats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    space_info: dict[str, dict] = {}
    for spec in features:
        name = _space_name(spec)
        with steps(f"features {name}"):
            fx = _fit_space(spec, config=config, pool_images=pool, seed=seed)
            f_t, f_h, f_s = (fx.transform_images(np.asarray(d.images)) for d in (train, holdout, synthetic))
            feats[name] = (f_t, f_h, f_s)
            views = config.pixel_views if name == "pixel" else (config.domain_views if name == "domain" else "none")
            invariance = {
                "pixel": "flipped views of the training set indexed" if views == "flips" else "none (exact/near-exact copies only)",
                "domain": "exact flip invariance (averaged over flips); rotation/shift/noise invariance learned",
                "polar": "exact flip and rotation invariance about the intensity centroid; shifts approximately",
            }.get(name, "unknown")
            f_index = np.concatenate([fx.transform_images(np.ascontiguousarray(v)) for v in flip_views(train.images)]) if views == "flips" else f_t
            space_info[name] = {
                "params": fx.get_params() if hasattr(fx, "get_params") else {},
                "dim": int(f_t.shape[1]),
                "views": views,
                "invariance": invariance,
            }
            if hasattr(fx, "train_seconds_"):
                space_info[name]["encoder_train_seconds"] = round(float(fx.train_seconds_), 3)
        if config.copy_search:
            with steps(f"copy search {name}"):
                res = detect_copies(
                    train_feats=f_index, holdout_feats=f_h, synthetic_feats=f_s, train_patients=train.patient_id, space=name,
                    holdout_patients=holdout.patient_id,
                    alpha=config.alpha, n_views=4 if views == "flips" else 1, carlini_k=config.carlini_k,
                    carlini_alpha=config.carlini_alpha, legacy_nndr=config.legacy_nndr, legacy_gu=config.legacy_gu,
                    hist_bins=config.hist_bins, seed=seed, confidence=config.confidence, top_k=config.top_k_pairs,
                )
                res.copy_detection["space"] = space_info[name]
                spaces[name] = res
                if art is not None:
                    from .pairs import save_top_pairs, write_per_slice_csv

                    write_per_slice_csv(res.per_slice, art / f"per_slice_{name}.csv")
                    save_top_pairs(synthetic_images=np.asarray(synthetic.images), train_images=train.images, per_slice=res.per_slice,
                                   path=art / f"top_pairs_{name}.png", k=config.top_k_pairs, title=f"closest pairs, {name} space")
    use_registered = config.registered
    if use_registered is None:  # auto: on unless the audit is larger than the registered search's cost guard
        use_registered = len(synthetic) + len(holdout) + len(train) <= config.registered_max_queries
    if config.copy_search and use_registered:
        with steps("copy search registered"):
            from .copy_search import CopySearchParams, registered_copy_detection

            params = CopySearchParams(alpha=config.copy_alpha, margin=config.copy_margin, **config.registered_params)
            spaces["registered"] = registered_copy_detection(train, holdout, synthetic, params=params, seed=seed,
                                                             hist_bins=config.hist_bins, top_k=config.top_k_pairs)
            spaces["registered"].copy_detection["space"] = {
                "invariance": "dihedral group, rotations <= 20 deg, shifts <= 4 px at 64², intensity polynomials "
                              "(gamma, window/level, contrast); tolerant of noise, blur and mild elastic deformation",
                "candidates": "spectral embedding (weight-free)", "role": "the copy decision (default gate scope)"}
            if art is not None:
                from .pairs import save_top_pairs, write_per_slice_csv

                res = spaces["registered"]
                write_per_slice_csv(res.per_slice, art / "per_slice_registered.csv")
                save_top_pairs(synthetic_images=np.asarray(synthetic.images), train_images=train.images, per_slice=res.per_slice,
                               path=art / "top_pairs_registered.png", k=config.top_k_pairs, title="closest pairs, registered")
    elif config.copy_search:
        why = ("switched off (AuditConfig(registered=False))" if config.registered is False else
               f"{len(synthetic) + len(holdout) + len(train)} slices exceed registered_max_queries="
               f"{config.registered_max_queries} (set registered=True to force it)")
        skipped_spaces["registered"] = skipped(f"registered copy search (the copy decision) not run: {why}")
        info_notes.append(skipped_spaces["registered"]["reason"])
    for res in spaces.values():  # every space names its flagged slices: the HTML report withholds them
        res.copy_detection["flagged_indices"] = [int(i) for i in np.flatnonzero(res.per_slice["copy"])]
    if art is not None and spaces:
        from .pairs import write_copy_flags_csv

        write_copy_flags_csv({k: v.per_slice["copy"] for k, v in spaces.items()}, art / "per_slice_copies.csv")
    masks: dict = skipped("mask audit disabled (config.masks=False)")
    if config.masks:
        with steps("mask copy search"):
            masks = detect_mask_copies(train=train, holdout=holdout, synthetic=synthetic, alpha=config.alpha, size=config.mask_size,
                                       dice_threshold=config.legacy_mask_dice, seed=seed, confidence=config.confidence,
                                       hist_bins=config.hist_bins)

    mia: dict[str, Any] = {}
    member = np.r_[np.ones(len(train), bool), np.zeros(len(holdout), bool)]
    groups = np.r_[train.patient_id.astype(str), holdout.patient_id.astype(str)]
    fold_h, fold_t = crossfit_reference_folds(holdout.patient_id, train.patient_id, seed=seed)
    ev = dict(seed=seed, n_resamples=config.n_resamples, confidence=config.confidence)
    if "gan_leaks" in config.attacks:
        for name, (f_t, f_h, f_s) in feats.items():
            with steps(f"gan_leaks {name}"):
                s_t, s_h = gan_leaks_scores(train_feats=f_t, holdout_feats=f_h, synthetic_feats=f_s, fold_h=fold_h, fold_t=fold_t)
                mia[f"gan_leaks_{name}"] = evaluate_attack(
                    f"gan_leaks_{name}", scores=np.r_[s_t, s_h], member=member, groups=groups,
                    info={"threat_model": "black-box (synthetic data + reference real data)", "feature_space": name,
                          "reference": "holdout, 2-fold cross-fit by patient"}, **ev)
    if "domias" in config.attacks:
        dom = "domain" if "domain" in feats else next(iter(feats))
        f_t, f_h, f_s = feats[dom]
        with steps("domias"):
            s_t, s_h = domias_scores(train_feats=f_t, holdout_feats=f_h, synthetic_feats=f_s, fold_h=fold_h, fold_t=fold_t,
                                     dims=config.domias_dims, k=config.kde_k)
            mia["domias"] = evaluate_attack(
                "domias", scores=np.r_[s_t, s_h], member=member, groups=groups,
                info={"threat_model": "black-box (synthetic data + reference real data)", "feature_space": dom,
                      "kde": f"Gaussian KDE, {config.domias_dims}-d PCA, {config.kde_k} nearest points"}, **ev)
    _whitebox(mia, generator=generator, train=train, holdout=holdout, config=config, seed=seed, steps=steps, ev=ev)
    if shadow is None:
        for name in ("lira_online", "lira_offline"):
            mia[name] = skipped("shadow models not requested (pass shadow=ShadowConfig(...) or --shadow K)")
    elif generator is None or not getattr(getattr(generator, "tags", None), "has_loss", False):
        for name in ("lira_online", "lira_offline"):
            mia[name] = skipped("shadow-model LiRA needs the fitted generator with a loss (tags.has_loss); none given")
    else:
        from .mia.shadow import run_shadow_attacks

        with steps("shadow models (LiRA)"):
            workdir = shadow.workdir or (str(Path(out_dir) / "privacy" / "shadows") if out_dir is not None else None)
            if workdir is None:
                import tempfile

                workdir = tempfile.mkdtemp(prefix="cmraudit-shadows-")
            sub_t = _subsample_patients(train, config.max_whitebox_slices // 2, seed)
            sub_h = _subsample_patients(holdout, config.max_whitebox_slices // 2, seed + 1)
            mia.update(run_shadow_attacks(target=generator, train=sub_t, holdout=sub_h, reference=reference, config=shadow,
                                          timesteps=_timesteps(generator, config.loss_timesteps), workdir=workdir, seed=seed,
                                          n_resamples=config.n_resamples, confidence=config.confidence))
    info = {
        "config": config.to_dict(),
        "seed": seed,
        "data": {n: {"patients": int(len(np.unique(d.patient_id.astype(str)))), "slices": int(len(d))}
                 for n, d in (("train", train), ("holdout", holdout), ("synthetic", synthetic))},
        "timings_s": steps.timings,
        "artefacts": None if art is None else str(art),
        "notes": info_notes,
    }
    return PrivacyResult(feature_spaces=spaces, masks=masks, mia=mia, info=info, skipped_spaces=skipped_spaces)


def _timesteps(generator, default):
    ts = getattr(generator, "audit_timesteps", None)
    return tuple(ts) if ts else tuple(default)


def _whitebox(mia, *, generator, train, holdout, config, seed, steps, ev) -> None:
    from .mia.attacks import ATTACKS
    from .mia.attacks.run import run_attacks  # registered attacks (pia, secmi, sima, …): issue 19

    mia.update(run_attacks([a for a in config.attacks if a in ATTACKS], generator=generator, train=train,
                           holdout=holdout, seed=seed, cap=config.max_whitebox_slices, subsample=_subsample_patients,
                           steps=steps, ev=ev))
    wanted = [a for a in ("loss", "fcre") if a in config.attacks]
    if not wanted:
        return
    has_loss = generator is not None and getattr(getattr(generator, "tags", None), "has_loss", False)
    if not has_loss:
        why = "no generator given (white-box attacks need --model)" if generator is None else "the generator has no loss (tags.has_loss is False)"
        for a in wanted:
            mia[a] = skipped(why)
        return
    from ..data.dataset import Dataset as _D
    from .mia.whitebox import crossfit_logistic, fcre_features, loss_matrix, loss_scores, whitebox_matrices

    sub_t = _subsample_patients(train, config.max_whitebox_slices // 2, seed)
    sub_h = _subsample_patients(holdout, config.max_whitebox_slices // 2, seed + 1)
    cand = _D.concat([sub_t, sub_h])
    member = np.r_[np.ones(len(sub_t), bool), np.zeros(len(sub_h), bool)]
    groups = cand.patient_id.astype(str)
    ts = _timesteps(generator, config.loss_timesteps)
    fcre_ok = "fcre" in wanted and hasattr(generator, "prediction_pair")
    if "fcre" in wanted and not fcre_ok:
        mia["fcre"] = skipped("the generator does not expose prediction_pair(images, masks, t=, seed=) needed by the FCRE band-pass feature")
    L = F = None
    if "loss" in wanted and fcre_ok and getattr(generator, "loss_is_pair_mse", False):
        with steps("white-box loss + fcre"):  # one network pass per timestep serves both attacks
            L, F = whitebox_matrices(generator, cand, loss_timesteps=ts, fcre_timesteps=tuple(config.fcre_timesteps), seed=seed)
    if "loss" in wanted:
        with steps("white-box loss"):
            L = loss_matrix(generator, cand, timesteps=ts, seed=seed) if L is None else L
            mia["loss"] = evaluate_attack("loss", scores=loss_scores(L), member=member, groups=groups,
                                          info={"threat_model": "white-box (model weights, loss)", "timesteps": list(ts)}, **ev)
    if fcre_ok:
        with steps("white-box fcre (legacy)"):
            F = fcre_features(generator, cand, timesteps=tuple(config.fcre_timesteps), seed=seed) if F is None else F
            mia["fcre"] = evaluate_attack("fcre", scores=crossfit_logistic(F, member, groups, seed=seed), member=member, groups=groups,
                                          info={"threat_model": "white-box (legacy FCRE band-pass, cross-fitted logistic regression)",
                                                "timesteps": list(config.fcre_timesteps)}, **ev)
