"""Canary-patient DP audit: train once with secretly included canary patients, then bound ε from below.

:func:`canary_audit` picks ``canaries`` patients of the dataset as canaries (seeded), includes each in the
training set with probability ½ (:func:`~cmraudit.privacy.dp_audit.draw_inclusion`; the draw is recorded in the
result), trains the generator with the run's settings (``dp`` or none) on the other patients plus the included
canaries, scores every canary with a white-box attack (a patient's score = the mean of its slices' scores), guesses
"in" for the ``r_plus`` highest and "out" for the ``r_minus`` lowest, and reports the one-run lower bound ε̂
(Steinke, Nasr, Jagielski 2023) beside the claimed ε. ``falsified`` is True when ε̂ exceeds the claim.

``distinctive > 0`` makes the canaries outliers, which a model memorises sooner (a stronger audit at the same
training): every slice of canary patient j gets j's own smooth random pattern (a seeded 4×4 Gaussian field,
upsampled bicubically, unit standard deviation) times ``distinctive`` added and clipped to [-1, 1]. The same
stamped slices are trained on (when included) and scored. ``attack="auto"`` picks the strongest attack the
generator's hooks allow (:data:`STRONGEST_FIRST`; measured in docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..errors import UsageError
from .dp_audit import OneRunAudit, draw_inclusion, guesses_from_scores, one_run_audit
from .mia.attacks import get_attack, missing_hooks
from .mia.whitebox import loss_matrix, loss_scores


@dataclass
class CanaryAuditResult:
    audit: OneRunAudit
    attack: str
    epsilon_claimed: float | None
    canary_ids: list[str]
    included: np.ndarray
    scores: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def epsilon_lower_bound(self) -> float:
        return self.audit.epsilon_lower_bound

    @property
    def falsified(self) -> bool:
        return self.epsilon_claimed is not None and self.audit.epsilon_lower_bound > self.epsilon_claimed

    def to_dict(self) -> dict:
        """The ``dp_audit`` report block."""
        g = guesses_from_scores(self.scores, r_plus=self.audit.r_plus, r_minus=self.audit.r_minus)
        return self.audit.to_dict() | {
            "epsilon_claimed": self.epsilon_claimed,
            "falsified": bool(self.falsified),
            "attack": self.attack,
            "unit": "patient",
            "note": "ε̂ is a lower bound at 1 − significance confidence: a small ε̂ does not show privacy; "
            "ε̂ above the claimed ε falsifies the claim",
            "canaries": [
                {"patient_id": p, "included": bool(i), "score": float(s), "guess": int(x)}
                for p, i, s, x in zip(self.canary_ids, self.included, self.scores, g)
            ],
            **self.info,
        }


STRONGEST_FIRST = ("grad_norm", "loss")


def strongest_attack(generator) -> str:
    """The first of :data:`STRONGEST_FIRST` that ``generator`` offers the hooks for."""
    from .mia.attacks import get_attack, missing_hooks, offered_hooks

    for name in STRONGEST_FIRST:
        if name == "loss":
            if "loss" in offered_hooks(generator):
                return name
        elif not missing_hooks(generator, get_attack(name)):
            return name
    raise UsageError("dp-audit: the generator offers no white-box hook (loss or parameter_gradients) to score canaries")


def stamp_canaries(ds, canary_ids, *, seed: int, strength: float):
    """A copy of ``ds`` where every slice of each canary patient carries that patient's own pattern (see module)."""
    from scipy.ndimage import zoom

    if strength <= 0:
        return ds
    images = np.array(ds.images, dtype=np.float32, copy=True)
    h, w = images.shape[1:]
    pids = np.asarray(ds.patient_id).astype(str)
    for j, p in enumerate(sorted(canary_ids)):
        coarse = np.random.default_rng([int(seed), 0xD157, j]).standard_normal((4, 4))
        field_ = zoom(coarse, (h / 4, w / 4), order=3)[:h, :w]
        field_ = (field_ - field_.mean()) / max(float(field_.std()), 1e-8)
        sel = pids == p
        images[sel] = np.clip(images[sel] + float(strength) * field_.astype(np.float32), -1.0, 1.0)
    return replace(ds, images=images, meta=dict(ds.meta))


def _patient_means(scores: np.ndarray, pids: np.ndarray, order: list[str]) -> np.ndarray:
    return np.array([float(np.mean(scores[pids == p])) for p in order])


def _score_slices(generator, ds, *, attack: str, seed: int) -> np.ndarray:
    if attack == "auto":
        attack = strongest_attack(generator)
    if attack == "loss":
        ts = tuple(getattr(generator, "audit_timesteps", None) or (50, 150, 300, 500))
        return loss_scores(loss_matrix(generator, ds, timesteps=ts, seed=seed))

    a = get_attack(attack)
    if a.needs_reference:
        raise UsageError(
            f"--attack {attack}: needs reference non-members, which a canary audit does not have; use loss, pia, …"
        )
    missing = missing_hooks(generator, a)
    if missing:
        raise UsageError(f"--attack {attack}: the generator does not offer the hook(s) {', '.join(missing)}")
    return a.score(generator, ds, seed)


def canary_audit(
    *,
    make_generator: Callable[[], Any],
    data,
    canaries: int,
    seed: int,
    dp=None,
    attack: str = "auto",
    distinctive: float = 0.0,
    r_plus: int | None = None,
    r_minus: int | None = None,
    significance: float = 0.05,
    fit_kwargs: dict | None = None,
) -> CanaryAuditResult:
    """Run one canary audit; ``make_generator()`` returns a fresh, unfitted generator with the run's settings."""
    pids = np.asarray(data.patient_id).astype(str)
    patients = np.unique(pids)
    m = int(canaries)
    if m < 2 or m > len(patients) - 2:
        raise UsageError(
            f"--canaries {canaries}: need 2 ≤ canaries ≤ {len(patients) - 2} (the dataset has {len(patients)} "
            "patients and at least 2 must stay non-canary)"
        )
    rp = max(1, m // 4) if r_plus is None else int(r_plus)
    rm = max(1, m // 4) if r_minus is None else int(r_minus)
    rng = np.random.default_rng([int(seed), 0xCA7])
    canary_ids = sorted(rng.choice(patients, size=m, replace=False).tolist())
    included = draw_inclusion(m, seed=seed)
    if distinctive < 0:
        raise UsageError(f"--distinctive {distinctive}: must be ≥ 0 (0 = canaries as they are)")
    data = stamp_canaries(data, canary_ids, seed=seed, strength=distinctive)
    base = [p for p in patients if p not in set(canary_ids)]
    train_ids = base + [p for p, inc in zip(canary_ids, included) if inc]
    gen = make_generator()
    gen.fit(
        data.select_patients(np.asarray(train_ids)),
        seed=seed,
        progress=False,
        **({} if dp is None else {"dp": dp}),
        **(fit_kwargs or {}),
    )
    cds = data.select_patients(np.asarray(canary_ids))
    attack = strongest_attack(gen) if attack == "auto" else attack
    slice_scores = np.asarray(_score_slices(gen, cds, attack=attack, seed=seed + 1), dtype=np.float64)
    scores = _patient_means(slice_scores, np.asarray(cds.patient_id).astype(str), canary_ids)
    claimed = None
    delta = 0.0
    block = getattr(gen, "dp_", None)
    if dp is not None and getattr(dp, "enabled", False):
        claimed = float(block["epsilon"]) if isinstance(block, dict) else float(dp.epsilon)
        delta = float(block["delta"]) if isinstance(block, dict) else float(dp.delta)
    res = one_run_audit(scores, included, r_plus=rp, r_minus=rm, delta=delta, significance=significance)
    info = {
        "n_base_patients": len(base),
        "n_train_patients": len(train_ids),
        "seed": int(seed),
        "distinctive": float(distinctive),
        "epsilon_claimed_source": "generator.dp.epsilon (joint accountant)" if claimed is not None else "no DP (ε = ∞)",
    }
    return CanaryAuditResult(
        audit=res,
        attack=attack,
        epsilon_claimed=claimed,
        canary_ids=canary_ids,
        included=included,
        scores=scores,
        info=info,
    )
