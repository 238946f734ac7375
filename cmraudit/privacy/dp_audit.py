"""One-run DP audit: a statistical lower bound ε̂ on the ε a training run actually achieved.

Steinke, Nasr and Jagielski, "Privacy auditing with one (1) training run" (NeurIPS 2023): m canaries are
each included in training independently with probability ½ (a recorded secret draw). After training the
auditor scores every canary, abstains on the middle and guesses "in" for the r₊ highest scores and "out"
for the r₋ lowest (r = r₊ + r₋ guesses); v of them are correct. Under (ε, δ)-DP the number of correct
guesses is dominated by Binomial(r, e^ε / (1 + e^ε)) plus a δ term (their Theorem 3.1 / Proposition 5.1):

    p(ε) = P[Binomial(r, q_ε) ≥ v] + 2·m·δ · max_{1≤i≤v} P[v − i ≤ Binomial(r, q_ε) < v] / i,   q_ε = 1/(1+e^-ε).

ε̂ is the largest ε whose p-value is still below the significance level (0.05 by default): the run is
*not* (ε̂, δ)-DP with that confidence. It is a lower bound — a small ε̂ proves nothing about privacy; an
ε̂ above the claimed ε falsifies the claim. For generators the canary unit is the patient, and a
canary's score is its membership score aggregated over its slices.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .._lazy import LazyModule
from ..errors import UsageError

optimize = LazyModule("scipy.optimize")
stats = LazyModule("scipy.stats")

__all__ = ["OneRunAudit", "draw_inclusion", "epsilon_lower_bound", "guesses_from_scores", "one_run_audit", "p_value"]


def _check_counts(m: int, r: int, v: int) -> None:
    if not (isinstance(m, (int, np.integer)) and isinstance(r, (int, np.integer)) and isinstance(v, (int, np.integer))):
        raise UsageError(f"one-run audit: m, r, v must be integers, got m={m!r}, r={r!r}, v={v!r}")
    if not 0 <= v <= r <= m:
        raise UsageError(f"one-run audit: need 0 ≤ correct ({v}) ≤ guesses ({r}) ≤ canaries ({m})")


def p_value(*, m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """Probability, under (ε, δ)-DP, of ≥ v correct among r guesses on m canaries (an upper bound)."""
    _check_counts(m, r, v)
    if not epsilon >= 0:
        raise UsageError(f"one-run audit: epsilon={epsilon} must be ≥ 0")
    if not 0 <= delta <= 1:
        raise UsageError(f"one-run audit: delta={delta} must be in [0, 1]")
    q = 1.0 / (1.0 + math.exp(-epsilon)) if epsilon < 700 else 1.0
    tail = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) ≥ v]
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    # P[v - i ≤ B < v] for i = 1..v, from the pmf at v-1, v-2, …, 0
    below = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))
    alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(tail + 2.0 * m * delta * alpha, 1.0)


def epsilon_lower_bound(
    *, m: int, r: int, v: int, delta: float = 0.0, significance: float = 0.05, tol: float = 1e-9
) -> float:
    """ε̂: the largest ε with ``p_value(ε) < significance`` (0.0 when even ε = 0 is not rejected).

    The p-value grows with ε, so ε̂ is the root of ``p_value(ε) = significance`` (Brent's method).
    """
    if not 0 < significance < 1:
        raise UsageError(f"one-run audit: significance={significance} must be in (0, 1), e.g. 0.05")
    _check_counts(m, r, v)

    def f(eps: float) -> float:
        return p_value(m=m, r=r, v=v, epsilon=eps, delta=delta) - significance

    if f(0.0) >= 0:
        return 0.0
    hi = 1.0
    while f(hi) < 0:
        hi *= 2.0
        if hi > 1e4:  # every guess right with enormous r: the bound is effectively unbounded
            return math.inf
    return float(optimize.brentq(f, hi / 2.0 if hi > 1 else 0.0, hi, xtol=tol))


def draw_inclusion(m: int, *, seed: int) -> np.ndarray:
    """The secret draw: canary i is included with probability ½, independently (seeded)."""
    if int(m) < 1:
        raise UsageError(f"one-run audit: need at least one canary, got {m}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0xCA9A])).random(int(m)) < 0.5


def guesses_from_scores(scores: np.ndarray, *, r_plus: int, r_minus: int) -> np.ndarray:
    """+1 ("in") for the r₊ highest scores, −1 ("out") for the r₋ lowest, 0 (abstain) otherwise.

    Ties are broken by position (stable sort), so the guesses are a pure function of the scores.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not np.all(np.isfinite(s)):
        raise UsageError("one-run audit: scores must be a 1-D array of finite numbers (one per canary)")
    if r_plus < 0 or r_minus < 0 or r_plus + r_minus > len(s):
        raise UsageError(
            f"one-run audit: r_plus={r_plus} + r_minus={r_minus} guesses must be ≥ 0 and ≤ {len(s)} canaries"
        )
    order = np.argsort(-s, kind="stable")
    g = np.zeros(len(s), dtype=np.int8)
    g[order[:r_plus]] = 1
    if r_minus:
        g[order[len(s) - r_minus :]] = -1
    return g


@dataclass(frozen=True)
class OneRunAudit:
    """The result of one audit: ε̂ with what it rests on (``to_dict`` is the report's ``dp_audit`` core)."""

    epsilon_lower_bound: float
    m: int
    r_plus: int
    r_minus: int
    guesses: int
    correct: int
    delta: float
    significance: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["epsilon_lower_bound"] = None if not math.isfinite(self.epsilon_lower_bound) else self.epsilon_lower_bound
        d["method"] = "one-run audit (Steinke, Nasr, Jagielski 2023), patient-level canaries"
        return d


def one_run_audit(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    r_plus: int,
    r_minus: int,
    delta: float = 0.0,
    significance: float = 0.05,
) -> OneRunAudit:
    """Guess from ``scores`` (higher = more likely included), count the correct guesses, bound ε."""
    included = np.asarray(included, dtype=bool)
    if included.shape != np.shape(scores):
        raise UsageError(
            f"one-run audit: {np.shape(scores)} scores for {included.shape} inclusion bits; give one per canary"
        )
    g = guesses_from_scores(scores, r_plus=r_plus, r_minus=r_minus)
    correct = int(np.sum((g == 1) & included) + np.sum((g == -1) & ~included))
    r = int(r_plus + r_minus)
    eps = epsilon_lower_bound(m=len(g), r=r, v=correct, delta=delta, significance=significance)
    return OneRunAudit(
        epsilon_lower_bound=eps,
        m=len(g),
        r_plus=int(r_plus),
        r_minus=int(r_minus),
        guesses=r,
        correct=correct,
        delta=float(delta),
        significance=float(significance),
    )
