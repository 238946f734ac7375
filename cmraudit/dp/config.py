"""DP-SGD options and the refusal of DP for a generator that does not support it (no torch here).

:class:`DPConfig` is what ``--dp-epsilon``, ``--dp-delta``, ``--max-grad-norm``, ``--accountant``,
``--noise-multiplicity`` and ``--dp-split`` build; :func:`cmraudit.dp.make_private` consumes it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np

from ..errors import UsageError
from .accounting import ACCOUNTANTS, compute_epsilon, split_budget
from .budget import calibrate_noise, parse_split, stage_weights


@dataclass(frozen=True)
class DPConfig:
    """DP-SGD options. ``epsilon = inf`` means no DP (``enabled`` is False).

    ``epsilon``/``delta``: the (ε, δ) budget per patient (add/remove one patient). The default
    δ = 1e-5 is below 1/(10·n) for any cohort up to 10 000 patients; :func:`make_private` refuses
    δ ≥ 1/n_patients (such a δ allows releasing one patient's data outright).
    ``max_grad_norm``: C, the L2 norm each patient's per-step gradient is clipped to.
    ``accountant``: "prv" (default, tighter) or "rdp".
    ``noise_multiplicity``: K, diffusion-loss draws (timestep, noise) averaged per example before clipping.
    ``split_weights``: stage → weight (``--dp-split mask=0.3,image=0.7``; None: equal), see :mod:`.budget`.
    ``noise_multiplier``: σ fixed by the joint calibration (:meth:`calibrate`); None: :func:`make_private`
    calibrates σ for this config's ε alone.
    """

    epsilon: float
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    noise_multiplicity: int = 1
    split_weights: tuple[tuple[str, float], ...] | None = None
    noise_multiplier: float | None = None

    def __post_init__(self):
        if self.split_weights is not None:
            w = self.split_weights
            object.__setattr__(self, "split_weights", parse_split(dict(w) if isinstance(w, (tuple, list)) else w))
        problems = []
        try:
            eps = float(self.epsilon)
        except (TypeError, ValueError):
            eps = float("nan")
        if not eps > 0:
            problems.append(f"--dp-epsilon {self.epsilon!r} must be a number > 0 (or inf for no DP)")
        if not (isinstance(self.delta, (int, float)) and 0 < self.delta < 1):
            problems.append(f"--dp-delta {self.delta!r} must be in (0, 1), e.g. 1e-5")
        if not (isinstance(self.max_grad_norm, (int, float)) and 0 < self.max_grad_norm < math.inf):
            problems.append(f"--max-grad-norm {self.max_grad_norm!r} must be a finite number > 0, e.g. 1.0")
        if self.accountant not in ACCOUNTANTS:
            problems.append(f"--accountant {self.accountant!r} is not an accountant; "
                            f"expected one of {', '.join(ACCOUNTANTS)}")
        if isinstance(self.noise_multiplicity, bool) or not isinstance(self.noise_multiplicity, (int, np.integer)) \
                or self.noise_multiplicity < 1:
            problems.append(f"--noise-multiplicity {self.noise_multiplicity!r} must be an integer ≥ 1")
        if self.noise_multiplier is not None and not (isinstance(self.noise_multiplier, (int, float))
                                                      and 0 < self.noise_multiplier < math.inf):
            problems.append(f"noise_multiplier {self.noise_multiplier!r} must be a finite number > 0 (or None)")
        if problems:
            raise UsageError("invalid DP options: " + "; ".join(problems))

    @property
    def enabled(self) -> bool:
        return math.isfinite(float(self.epsilon))

    @classmethod
    def from_options(cls, epsilon: float | None = None, *, delta: float = 1e-5, max_grad_norm: float = 1.0,
                     accountant: str = "prv", noise_multiplicity: int = 1,
                     split: str | None = None) -> "DPConfig | None":
        """The CLI entry: ``None`` when ``--dp-epsilon`` is absent or ``inf`` (no DP), else a validated config."""
        if epsilon is None or (isinstance(epsilon, (int, float)) and math.isinf(epsilon) and epsilon > 0):
            if split is not None:
                raise UsageError(f"--dp-split {split!r} needs --dp-epsilon (a finite DP budget to split)")
            return None
        return cls(epsilon=epsilon, delta=delta, max_grad_norm=max_grad_norm, accountant=accountant,
                   noise_multiplicity=noise_multiplicity, split_weights=parse_split(split))

    def split(self, stages: Sequence[str]) -> dict[str, "DPConfig"]:
        """One config per stage with (ε/n, δ/n): basic composition keeps the total within (ε, δ)."""
        return {s: replace(self, epsilon=e, delta=d)
                for s, (e, d) in split_budget(epsilon=self.epsilon, delta=self.delta, stages=stages).items()}

    def calibrate(self, stages: dict[str, tuple[float, int]]) -> dict[str, "DPConfig"]:
        """One config per stage, σ_i fixed so that the *joint* accounting of all stages spends (ε, δ).

        ``stages``: stage → (sample rate q, planned steps). Each stage gets δ/n (the joint ε is computed at
        Σ δ_i = δ) and σ_i from :func:`.budget.calibrate_noise` with this config's ``split_weights``; its
        ``epsilon`` is then what that stage alone spends (for the per-stage report), not a share of ε.
        """
        weights = stage_weights(self.split_weights, list(stages))
        sigmas, _ = calibrate_noise(epsilon=float(self.epsilon), delta=float(self.delta), accountant=self.accountant,
                                    stages=stages, weights=weights)
        d = float(self.delta) / len(stages)
        return {s: replace(self, noise_multiplier=sigmas[s], delta=d,
                           epsilon=compute_epsilon(noise_multiplier=sigmas[s], sample_rate=q, steps=int(t), delta=d,
                                                   accountant=self.accountant))
                for s, (q, t) in stages.items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["epsilon"] = d["epsilon"] if self.enabled else None
        d["split_weights"] = None if self.split_weights is None else {k: float(v) for k, v in self.split_weights}
        return d


def require_dp_support(*, name: str, tags: Any, dp: DPConfig | None) -> None:
    """Refuse ``--dp-epsilon`` for a generator whose tags do not say ``supports_dp``."""
    if dp is not None and dp.enabled and not getattr(tags, "supports_dp", False):
        raise UsageError(
            f"--dp-epsilon {dp.epsilon}: generator {name!r} does not support DP training (its tags say "
            "supports_dp=False); drop --dp-epsilon or choose a generator that supports it "
            "(`cmraudit generators list` shows the tags)"
        )
