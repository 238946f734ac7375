"""Configuration of the privacy audit (one dataclass per concern, validated at construction)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ConfigError
from .copy_search import CopySearchParams
from .mia.attacks import attack_names
from .mia.interface import ATTACKS

#: the attacks run when none are named; any other registered attack (ATTACKS) is opt-in by name
DEFAULT_ATTACKS = ("gan_leaks", "domias", "loss", "fcre")
VIEWS = ("none", "flips")


def lira_statistics() -> tuple[str, ...]:
    """The per-example statistics shadow-model LiRA accepts: the loss, or a registered white-box attack that needs no
    reference non-members (``ShadowConfig.score_attack``, ``cmraudit audit --shadow-score``)."""
    return ("loss",) + tuple(a for a in attack_names() if not ATTACKS.get(a).needs_reference)


@dataclass(frozen=True)
class AuditConfig:
    """Knobs of :func:`cmraudit.privacy.audit.audit_privacy`.

    alpha: target false-positive rate of the calibrated copy threshold (share of *novel*
        images flagged as copies), calibrated on holdout→train nearest distances.
    pixel_size: side of the pixel feature space (area-downsampled; None = native).
    pixel_views / domain_views: "flips" also indexes the 3 flipped views of every training
        slice (exact flip invariance at 4× search cost); "none" indexes the slices only.
        The domain embedding is flip invariant by construction, so "none" is its default.
    carlini_k, carlini_alpha: Carlini et al. (2023) ratio d1 / (carlini_alpha · mean d to the
        carlini_k nearest training slices).
    legacy_nndr / legacy_gu / legacy_mask_dice: legacy thresholds (reference study NNDR < 0.6,
        Gu et al. NNDR < 1/3, mask Dice > 0.99), reported beside the calibrated ones.
    mask_size: side of the soft one-hot mask space for mask copy search.
    n_resamples / confidence: patient bootstrap for MIA CIs.
    domias_dims / kde_k: DOMIAS density ratio in a PCA projection of the domain embedding,
        Gaussian KDE truncated to the kde_k nearest points (memory linear in the data).
    loss_timesteps / fcre_timesteps: white-box timestep grids (the generator's own time unit,
        e.g. 0..999 for a 1000-step DDPM); a generator may override them with an
        ``audit_timesteps`` attribute.
    max_whitebox_slices: cap on slices scored by white-box attacks (members and non-members
        subsampled by patient, seeded) to bound generator evaluations.
    registered / registered_params: the ``registered`` copy search (cmraudit.privacy.copy_search): the copy
        decision, invariant to the transforms of cmraudit.data.copy_transforms, calibrated per patient.
        None (auto): on unless train + holdout + synthetic slices exceed registered_max_queries (≈ 0.5 ms a
        query slice on 2 cores at 64²); True / False force it. registered_params go to CopySearchParams
        (k_candidates, recall_copies, n_boot, power, max_null_queries, fine_window_px, envelope_weight, …).
    copy_alpha: target false-flag rate per novel slice of the registered search (upper bound of the
        patient-bootstrapped null tail at the threshold).
    copy_margin: the registered threshold also stays below copy_margin × the smallest null residual seen.
    top_k_pairs: closest synthetic–train pairs drawn into privacy/top_pairs_<space>.png.
    """

    alpha: float = 1e-3
    pixel_size: int | None = 32
    pixel_views: str = "none"
    domain_views: str = "none"
    carlini_k: int = 50
    carlini_alpha: float = 0.5
    legacy_nndr: float = 0.6
    legacy_gu: float = 1 / 3
    legacy_mask_dice: float = 0.99
    mask_size: int = 16
    hist_bins: int = 30
    n_resamples: int = 1000
    confidence: float = 0.95
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    domias_dims: int = 8
    kde_k: int = 50
    loss_timesteps: tuple = (50, 150, 300, 500)
    fcre_timesteps: tuple = (300, 400, 500)
    max_whitebox_slices: int = 2000
    top_k_pairs: int = 12
    domain_params: dict = field(default_factory=dict)
    registered: bool | None = None
    registered_max_queries: int = 200_000
    copy_alpha: float = 1e-3
    copy_margin: float = 0.5
    registered_params: dict = field(default_factory=dict)
    copy_search: bool = True
    masks: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.alpha < 0.5:
            problems.append(f"alpha must be in (0, 0.5), got {self.alpha}")
        for name in ("pixel_views", "domain_views"):
            if getattr(self, name) not in VIEWS:
                problems.append(f"{name} must be one of {VIEWS}, got {getattr(self, name)!r}")
        known = ATTACKS.names(ok_only=False)  # a broken third-party attack fails later, naming its import error
        unknown = [a for a in self.attacks if a not in known]
        if unknown:
            problems.append(f"unknown attacks {unknown}; expected some of {known}")
        if self.carlini_k < 2:
            problems.append(f"carlini_k must be >= 2, got {self.carlini_k}")
        if not 0 < self.copy_alpha < 0.5:
            problems.append(f"copy_alpha must be in (0, 0.5), got {self.copy_alpha}")
        if not 0 < self.copy_margin <= 1:
            problems.append(f"copy_margin must be in (0, 1], got {self.copy_margin}")
        if not 0 < self.confidence < 1:
            problems.append(f"confidence must be in (0, 1), got {self.confidence}")
        if self.n_resamples < 10:
            problems.append(f"n_resamples must be >= 10, got {self.n_resamples}")
        own = {"alpha": "copy_alpha", "margin": "copy_margin"}  # set on AuditConfig itself
        known_params = sorted({f.name for f in fields(CopySearchParams)} - set(own))
        for key in sorted(set(self.registered_params) - set(known_params)):
            hint = f"set AuditConfig({own[key]}=…)" if key in own else f"expected some of {known_params}"
            problems.append(f"registered_params: unknown key {key!r}; {hint}")
        if problems:
            raise ConfigError("AuditConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attacks"] = list(self.attacks)
        d["loss_timesteps"] = list(self.loss_timesteps)
        d["fcre_timesteps"] = list(self.fcre_timesteps)
        return d


@dataclass(frozen=True)
class ShadowConfig:
    """Shadow-model membership inference (LiRA, Carlini et al. 2022).

    k: number of shadow generators. generator/params: registered generator name (cmraudit.registry) and
        hyper-parameters; None = the target's own class and ``get_params()``.
    executor: "local" (process pool; one GPU per worker when GPUs exist), "slurm" (submitit
        job array; ``executor_options`` go to ``update_parameters``; cluster="local" runs it
        locally), "ray" (needs ``pip install cmraudit[ray]``), "inline" (same process), or
        an executor object with ``map(fn, specs) -> list``.
    modes: "online" (shadows on random halves of train ∪ holdout patients) and/or "offline"
        (shadows on reference patients disjoint from the candidates; needs ``reference``).
    workdir: where shadow checkpoints go (idempotent: finished shadows are skipped).
    """

    k: int = 8
    generator: str | None = None
    params: dict | None = None
    executor: Any = "local"
    executor_options: dict = field(default_factory=dict)
    modes: tuple[str, ...] = ("online", "offline")
    workdir: str | None = None
    max_workers: int | None = None
    fit_kwargs: dict = field(default_factory=dict)
    global_variance: bool | None = None  # None: global when k < 64 (Carlini et al.)
    score_attack: str = "loss"  # per-example statistic: "loss" or a registered attack (not flow_gap: needs a reference)

    def __post_init__(self) -> None:
        problems = []
        if self.k < 2:
            problems.append(f"k must be >= 2 shadow models, got {self.k}")
        bad = [m for m in self.modes if m not in ("online", "offline")]
        if bad or not self.modes:
            problems.append(f"modes must be a non-empty subset of ('online', 'offline'), got {self.modes}")
        scorable = lira_statistics()
        if self.score_attack not in scorable:
            problems.append(f"score_attack must be one of {list(scorable)}, got {self.score_attack!r}")
        if problems:
            raise ConfigError("ShadowConfig: " + "; ".join(problems))
