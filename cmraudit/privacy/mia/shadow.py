"""Shadow-model membership inference: LiRA online and offline (Carlini et al. 2022).

Threat model: the attacker knows the training recipe (same plugin and hyper-parameters as
the target, different seeds), can train generators on data from the population, and can
evaluate the target's loss on candidate slices (white-box score; the target must have
``tags.has_loss``). Candidates are the target's members (train) and non-members (holdout).

- **online**: K shadows, each trained on a random half of the candidate patients
  (train ∪ holdout), so each candidate is IN for about K/2 shadows. Per candidate, Gaussians
  fitted to its IN and OUT shadow scores give score = log N(s; μ_in, σ_in) − log N(s; μ_out,
  σ_out) for the target's score s. With fewer than 64 shadows one global σ per side is used.
- **offline**: K shadows trained on random halves of *reference* patients disjoint from the
  candidates (e.g. the test split): OUT fits only, score = (s − μ_out) / σ_out.

The per-model score of a slice is s = −mean over the timestep grid of its loss (fixed noise).
Slice level: per-slice fits. Patient level: a patient's score is the mean of its slices'
s (per model), with per-patient fits. Membership labels of the target are used only to
evaluate the scores, never to fit anything.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ...data.dataset import Dataset, write_dataset
from ...estimates import skipped
from ..config import ShadowConfig
from .attacks import get_attack, missing_hooks
from .executors import ShadowSpec, generator_name, get_executor, train_shadow
from .interface import AuditContext, audit_timesteps, subsample_patients
from .metrics import AttackResult, evaluate_level
from .whitebox import loss_matrix


def _norm_logpdf(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)


def lira_online(
    target: np.ndarray, shadow: np.ndarray, in_mask: np.ndarray, *, global_variance: bool = True
) -> np.ndarray:
    """Online LiRA scores. target [N]; shadow [K, N]; in_mask [K, N] (True = row IN for that shadow)."""
    nan_in = np.where(in_mask, shadow, np.nan)
    nan_out = np.where(~in_mask, shadow, np.nan)
    with np.errstate(invalid="ignore"), _quiet():
        mu_in = np.nanmean(nan_in, 0)
        mu_out = np.nanmean(nan_out, 0)
    gap = np.nanmean(mu_in - mu_out) if np.isfinite(mu_in - mu_out).any() else 0.0
    mu_in = np.where(np.isfinite(mu_in), mu_in, mu_out + gap)
    mu_out = np.where(np.isfinite(mu_out), mu_out, mu_in - gap)
    if global_variance:
        sd_in = np.nanstd(nan_in - mu_in) if np.isfinite(nan_in).any() else 1.0
        sd_out = np.nanstd(nan_out - mu_out) if np.isfinite(nan_out).any() else 1.0
        sd_in = np.full(len(target), max(float(sd_in), 1e-12))
        sd_out = np.full(len(target), max(float(sd_out), 1e-12))
    else:
        with _quiet():
            sd_in = np.maximum(np.nan_to_num(np.nanstd(nan_in, 0), nan=np.nanstd(nan_in - mu_in)), 1e-12)
            sd_out = np.maximum(np.nan_to_num(np.nanstd(nan_out, 0), nan=np.nanstd(nan_out - mu_out)), 1e-12)
    return _norm_logpdf(target, mu_in, sd_in) - _norm_logpdf(target, mu_out, sd_out)


def lira_offline(target: np.ndarray, shadow_out: np.ndarray, *, global_variance: bool = True) -> np.ndarray:
    """Offline LiRA: standardised distance of the target's score above the OUT mean."""
    mu = shadow_out.mean(0)
    sd = np.full(len(target), (shadow_out - mu).std()) if global_variance else shadow_out.std(0)
    sd = np.maximum(sd, 1e-12)
    return (target - mu) / sd


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def _patient_matrix(x: np.ndarray, code: np.ndarray, n_pat: int) -> np.ndarray:
    """Mean over each patient's slices along the last axis."""
    x2 = np.atleast_2d(x)
    cnt = np.bincount(code, minlength=n_pat)
    out = np.stack([np.bincount(code, weights=row, minlength=n_pat) / cnt for row in x2])
    return out if x.ndim > 1 else out[0]


def run_shadow_attacks(
    *,
    target,
    train: Dataset,
    holdout: Dataset,
    reference: Dataset | None,
    config: ShadowConfig,
    timesteps,
    workdir,
    seed: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> dict:
    """Train shadows through the executor and score the target with LiRA. Returns {name: AttackResult | skipped}."""
    if config.score_attack != "loss":
        missing = missing_hooks(target, get_attack(config.score_attack))
        if missing:
            why = (f"LiRA on {config.score_attack} needs the hook(s) {', '.join(missing)}, "
                   "which the target does not offer")
            return {f"lira_{m}": skipped(why) for m in config.modes}
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cand = Dataset.concat([train, holdout])
    member = np.r_[np.ones(len(train), bool), np.zeros(len(holdout), bool)]
    groups = cand.patient_id.astype(str)
    cand_path = workdir / "candidates"
    if not (cand_path / "dataset.json").is_file():
        write_dataset(cand, cand_path, overwrite=True)
    gen_name = config.generator or generator_name(target)
    params = dict(config.params if config.params is not None else target.get_params())
    cand_patients = np.unique(groups)
    rng = np.random.default_rng(seed + 55)
    specs: list[ShadowSpec] = []
    in_sets: list[set] = []
    out_: dict = {}
    modes = list(config.modes)
    if "offline" in modes and (reference is None or len(reference) == 0):
        out_["lira_offline"] = skipped(
            "offline LiRA needs reference patients disjoint from train and holdout (e.g. the test split)"
        )
        modes.remove("offline")
    if "online" in modes:
        for i in range(config.k):
            half = tuple(sorted(rng.choice(cand_patients, size=len(cand_patients) // 2, replace=False).tolist()))
            in_sets.append(set(half))
            specs.append(
                ShadowSpec(
                    index=i,
                    generator=gen_name,
                    params=params,
                    data_path=str(cand_path),
                    patients=half,
                    seed=seed + 1000 + i,
                    out_dir=str(workdir / f"online_{i:03d}"),
                    candidates_path=str(cand_path),
                    timesteps=tuple(timesteps),
                    score_seed=seed,
                    fit_kwargs=dict(config.fit_kwargs),
                    score_attack=config.score_attack,
                )
            )
    n_online = len(specs)
    if "offline" in modes:
        ref_path = workdir / "reference"
        if not (ref_path / "dataset.json").is_file():
            write_dataset(reference, ref_path, overwrite=True)
        ref_patients = np.unique(reference.patient_id.astype(str))
        for i in range(config.k):
            half = tuple(sorted(rng.choice(ref_patients, size=max(1, len(ref_patients) // 2), replace=False).tolist()))
            specs.append(
                ShadowSpec(
                    index=i,
                    generator=gen_name,
                    params=params,
                    data_path=str(ref_path),
                    patients=half,
                    seed=seed + 5000 + i,
                    out_dir=str(workdir / f"offline_{i:03d}"),
                    candidates_path=str(cand_path),
                    timesteps=tuple(timesteps),
                    score_seed=seed,
                    fit_kwargs=dict(config.fit_kwargs),
                    score_attack=config.score_attack,
                )
            )
    if not specs:
        return out_
    opts = dict(config.executor_options)
    if config.executor == "local" and config.max_workers:
        opts.setdefault("max_workers", config.max_workers)
    if config.executor == "slurm":
        opts.setdefault("folder", str(workdir / "submitit"))
    executor = get_executor(config.executor, **opts)
    dirs = executor.map(train_shadow, specs)
    if config.score_attack == "loss":
        losses = np.stack([np.load(Path(d) / "losses.npy") for d in dirs])  # [K, N, T]
        shadow_s = -losses.mean(2)
        target_s = -loss_matrix(target, cand, timesteps=timesteps, seed=seed).mean(1)
    else:  # any registered attack as the per-example statistic (same seed for target and shadows)
        shadow_s = np.stack([np.load(Path(d) / f"scores_{config.score_attack}.npy") for d in dirs])  # [K, N]
        target_s = np.asarray(get_attack(config.score_attack).score(target, cand, seed), dtype=np.float64)
    gv = config.global_variance if config.global_variance is not None else config.k < 64
    uniq, code = np.unique(groups, return_inverse=True)
    pat_member = np.zeros(len(uniq), bool)
    pat_member[code[member]] = True
    t_pat = _patient_matrix(target_s, code, len(uniq))
    info = {
        "k": config.k,
        "generator": gen_name,
        "global_variance": bool(gv),
        "executor": getattr(executor, "name", type(executor).__name__),
        "timesteps": list(timesteps),
        "seed": seed,
        "score_attack": config.score_attack,
    }

    def result(name, slice_scores, patient_scores):
        sl = evaluate_level(
            slice_scores, member, groups, unit="slice", seed=seed, n_resamples=n_resamples, confidence=confidence
        )
        pl = evaluate_level(
            patient_scores,
            pat_member,
            uniq,
            unit="patient",
            seed=seed + 1,
            n_resamples=n_resamples,
            confidence=confidence,
        )
        return AttackResult(name=name, slice=sl, patient=pl, info=info)

    if n_online:
        s_on = shadow_s[:n_online]
        in_mask = np.stack([np.isin(groups, list(s)) for s in in_sets])
        pin_mask = np.stack([np.isin(uniq, list(s)) for s in in_sets])
        p_on = _patient_matrix(s_on, code, len(uniq))
        out_["lira_online"] = result("lira_online", lira_online(target_s, s_on, in_mask, global_variance=gv),
                                     lira_online(t_pat, p_on, pin_mask, global_variance=gv))
    if len(specs) > n_online:
        s_off = shadow_s[n_online:]
        p_off = _patient_matrix(s_off, code, len(uniq))
        out_["lira_offline"] = result("lira_offline", lira_offline(target_s, s_off, global_variance=gv),
                                      lira_offline(t_pat, p_off, global_variance=gv))
    return out_


def shadow_lira(ctx: AuditContext) -> dict:
    """The ``lira_online`` / ``lira_offline`` blocks of the audit: skipped unless ``ctx.shadow`` is set and the
    generator has a loss; shadows go to ``ctx.shadow.workdir``, else ``<out_dir>/privacy/shadows``, else a temp dir."""
    shadow, generator, cfg = ctx.shadow, ctx.generator, ctx.config
    if shadow is None:
        return {n: skipped("shadow models not requested (pass shadow=ShadowConfig(...) or --shadow K)")
                for n in ("lira_online", "lira_offline")}
    if generator is None or not getattr(getattr(generator, "tags", None), "has_loss", False):
        return {n: skipped("shadow-model LiRA needs the fitted generator with a loss (tags.has_loss); none given")
                for n in ("lira_online", "lira_offline")}
    with ctx.steps("shadow models (LiRA)"):
        workdir = shadow.workdir or (str(Path(ctx.out_dir) / "privacy" / "shadows") if ctx.out_dir is not None
                                     else tempfile.mkdtemp(prefix="cmraudit-shadows-"))
        sub_t = subsample_patients(ctx.train, cfg.max_whitebox_slices // 2, ctx.seed)
        sub_h = subsample_patients(ctx.holdout, cfg.max_whitebox_slices // 2, ctx.seed + 1)
        return run_shadow_attacks(target=generator, train=sub_t, holdout=sub_h, reference=ctx.reference,
                                  config=shadow, timesteps=audit_timesteps(generator, cfg.loss_timesteps),
                                  workdir=workdir, seed=ctx.seed, n_resamples=cfg.n_resamples,
                                  confidence=cfg.confidence)
