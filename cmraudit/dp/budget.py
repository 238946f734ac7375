"""Spend the budget asked for: noise multipliers calibrated so the *joint* accounting meets ε.

Splitting (ε, δ) evenly across stages and calibrating each stage alone (basic composition) leaves budget
unspent: the joint PRV accounting of a two-stage generator at ε = 8 then reports ≈ 5.7. Here all stages are
calibrated together instead: the stages see the same patients, so their Poisson-subsampled Gaussian
mechanisms compose, and the accountant over the joint history (the same computation :func:`compose_budget`
reports) is made to land in [0.99·ε, ε] at δ.

The split between stages is a weight per stage (``--dp-split mask=0.3,image=0.7``; equal by default). A
weight is the stage's share of the budget in the Gaussian-DP sense (Dong, Roth, Su 2022): T steps of the
subsampled Gaussian mechanism with rate q and noise multiplier σ behave as μ-GDP with
μ² ≈ q²·T·(e^{1/σ²} − 1), and μ² adds up across composed mechanisms. Stage i gets μ_i² = w_i·μ², i.e.

    σ_i(μ) = 1 / sqrt(log(1 + w_i·μ² / (q_i²·T_i))),

and one scalar μ is searched (bisection) until the exact accountant (PRV or RDP) over all stages gives the
requested ε. The GDP formula only shapes how the noise is shared; the reported ε is the accountant's.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from ..errors import UsageError
from .accounting import _epsilon_of_history

__all__ = ["STAGE_ALIASES", "calibrate_noise", "parse_split", "stage_weights"]

# short names accepted by --dp-split → stage names of generator.dp.stages
STAGE_ALIASES = {
    "mask": "mask_model",
    "image": "image_model",
    "ae": "autoencoder",
    "autoencoder": "autoencoder",
    "mask_model": "mask_model",
    "image_model": "image_model",
}

TOLERANCE = 0.99  # the joint ε lands in [TOLERANCE·ε, ε]


def parse_split(text: str | Mapping[str, float] | None) -> tuple[tuple[str, float], ...] | None:
    """``"mask=0.3,image=0.7"`` → ``(("mask_model", 0.3), ("image_model", 0.7))`` (not yet normalised)."""
    if text is None:
        return None
    if isinstance(text, Mapping):
        items = list(text.items())
    else:
        items = []
        for part in str(text).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise UsageError(f"--dp-split {text!r}: expected STAGE=WEIGHT pairs, e.g. mask=0.3,image=0.7")
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out: dict[str, float] = {}
    for k, v in items:
        stage = STAGE_ALIASES.get(str(k).lower())
        if stage is None:
            raise UsageError(f"--dp-split {text!r}: unknown stage {k!r}; use {', '.join(sorted(set(STAGE_ALIASES)))}")
        try:
            w = float(v)
        except (TypeError, ValueError):
            w = float("nan")
        if not (math.isfinite(w) and w > 0):
            raise UsageError(f"--dp-split {text!r}: the weight of {k!r} must be a number > 0, got {v!r}")
        if stage in out:
            raise UsageError(f"--dp-split {text!r}: stage {stage!r} is given twice")
        out[stage] = w
    if not out:
        raise UsageError(f"--dp-split {text!r}: no STAGE=WEIGHT pair given, e.g. mask=0.3,image=0.7")
    return tuple(out.items())


def stage_weights(split: Sequence[tuple[str, float]] | None, stages: Sequence[str]) -> dict[str, float]:
    """Normalised weights for exactly ``stages`` (equal when ``split`` is None)."""
    stages = list(stages)
    if not split:
        return {s: 1.0 / len(stages) for s in stages}
    given = dict(split)
    if set(given) != set(stages):
        missing, extra = sorted(set(stages) - set(given)), sorted(set(given) - set(stages))
        raise UsageError(
            f"--dp-split: this generator trains the stages {', '.join(stages)} on patient data; give a weight for each "
            f"(missing: {', '.join(missing) or 'none'}; not a stage here: {', '.join(extra) or 'none'})"
        )
    total = sum(given.values())
    return {s: given[s] / total for s in stages}


def _sigma(mu: float, w: float, q: float, steps: int) -> float:
    return 1.0 / math.sqrt(math.log1p(w * mu * mu / (q * q * steps)))


def calibrate_noise(
    *,
    epsilon: float,
    delta: float,
    accountant: str,
    stages: Mapping[str, tuple[float, int]],
    weights: Mapping[str, float] | None = None,
    max_iter: int = 60,
) -> tuple[dict[str, float], float]:
    """Noise multipliers σ_i per stage so that the joint ε over all stages is in [0.99·ε, ε] at ``delta``.

    ``stages``: stage → (sample rate q, planned steps T). Returns (stage → σ, the joint ε they give).
    """
    if not stages:
        raise UsageError("calibrate_noise: no stages given")
    for name, (q, steps) in stages.items():
        if not 0 < q <= 1 or int(steps) < 1:
            raise UsageError(
                f"calibrate_noise: stage {name!r} has sample rate {q} and {steps} steps; need 0 < q ≤ 1, steps ≥ 1"
            )
    w = dict(weights) if weights is not None else {s: 1.0 / len(stages) for s in stages}

    def sigmas(mu: float) -> dict[str, float]:
        return {s: _sigma(mu, w[s], q, int(t)) for s, (q, t) in stages.items()}

    def joint(mu: float) -> float:
        sig = sigmas(mu)
        return _epsilon_of_history(
            [(sig[s], q, int(t)) for s, (q, t) in stages.items()], delta=delta, accountant=accountant
        )

    lo, hi = 0.0, 1.0
    e_hi = joint(hi)
    while e_hi <= epsilon:  # grow μ (less noise) until the budget is exceeded
        lo, hi = hi, hi * 2.0
        if hi > 1e6:
            raise UsageError(f"--dp-epsilon {epsilon}: even almost no noise stays below ε; lower --dp-epsilon")
        e_hi = joint(hi)
    best = None
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi) if lo > 0 else hi / 2.0
        e = joint(mid)
        if e <= epsilon:
            lo, best = mid, (mid, e)
            if e >= TOLERANCE * epsilon:
                break
        else:
            hi = mid
    if best is None or best[1] < TOLERANCE * epsilon:
        got = "nothing" if best is None else f"{best[1]:.4f}"
        raise UsageError(
            f"--dp-epsilon {epsilon}: could not calibrate the noise to a joint ε in "
            f"[{TOLERANCE * epsilon:.4g}, {epsilon}] (reached {got}); try --accountant rdp"
        )
    return sigmas(best[0]), float(best[1])
