"""One-run DP audit bound (Steinke, Nasr, Jagielski 2023): golden values, invariants, planted canaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmraudit.errors import UsageError
from cmraudit.privacy.dp_audit import (
    draw_inclusion,
    epsilon_lower_bound,
    guesses_from_scores,
    one_run_audit,
    p_value,
)

# (m canaries, r guesses, v correct, δ) → ε̂ at significance 0.05 (issue 19 acceptance; shared/REFERENCES.md)
GOLDEN = [
    ((1000, 100, 90, 0.0), 1.6308),
    ((1000, 100, 90, 1e-5), 1.6261),
    ((1000, 1000, 700, 0.0), 0.7320),
    ((200, 50, 50, 0.0), 2.7847),
    ((100, 20, 15, 1e-5), 0.1769),
    ((1000, 100, 50, 0.0), 0.0),
]


@pytest.mark.parametrize("args,expected", GOLDEN)
def test_golden_values(args, expected):
    m, r, v, delta = args
    assert epsilon_lower_bound(m=m, r=r, v=v, delta=delta, significance=0.05) == pytest.approx(expected, abs=1e-3)


def test_bound_is_the_significance_crossing():
    eps = epsilon_lower_bound(m=1000, r=100, v=90, delta=1e-5)
    assert p_value(m=1000, r=100, v=90, epsilon=eps - 1e-4, delta=1e-5) < 0.05
    assert p_value(m=1000, r=100, v=90, epsilon=eps + 1e-4, delta=1e-5) >= 0.05
    # ε = 0 with δ = 0: each guess is a fair coin, the p-value is the plain binomial tail
    assert p_value(m=10, r=10, v=10, epsilon=0.0) == pytest.approx(0.5**10)


def test_monotone_in_correct_guesses_delta_and_significance():
    eps_v = [epsilon_lower_bound(m=500, r=100, v=v) for v in range(50, 101, 5)]
    assert all(a <= b for a, b in zip(eps_v, eps_v[1:])) and eps_v[0] == 0.0 and eps_v[-1] > 3
    assert epsilon_lower_bound(m=1000, r=100, v=90, delta=1e-3) < epsilon_lower_bound(m=1000, r=100, v=90, delta=0)
    assert epsilon_lower_bound(m=1000, r=100, v=90, significance=0.01) < epsilon_lower_bound(m=1000, r=100, v=90)


def test_guesses_top_and_bottom():
    g = guesses_from_scores(np.array([0.1, 0.9, 0.5, 0.3, 0.7]), r_plus=2, r_minus=1)
    assert g.tolist() == [-1, 1, 0, 0, 1]


def test_planted_canaries_found_and_null_not_falsely_bounded():
    inc = draw_inclusion(1000, seed=3)
    assert 450 < inc.sum() < 550
    assert np.array_equal(inc, draw_inclusion(1000, seed=3)) and not np.array_equal(inc, draw_inclusion(1000, seed=4))
    rng = np.random.default_rng(0)
    # a leaky mechanism: included canaries score clearly higher
    leaky = one_run_audit(inc + rng.normal(0, 0.3, 1000), inc, r_plus=100, r_minus=100)
    assert leaky.correct >= 190 and leaky.epsilon_lower_bound > 2.0
    # scores independent of inclusion (a perfectly private mechanism): ε̂ = 0 for most seeds (level 0.05)
    null = [
        one_run_audit(np.random.default_rng(s).normal(size=1000), inc, r_plus=50, r_minus=50).epsilon_lower_bound
        for s in range(40)
    ]
    assert sum(e > 0 for e in null) <= 6


def test_bad_input_is_a_usage_error():
    with pytest.raises(UsageError, match="correct"):
        epsilon_lower_bound(m=10, r=5, v=6)
    with pytest.raises(UsageError, match="significance"):
        epsilon_lower_bound(m=10, r=5, v=3, significance=1.5)
    with pytest.raises(UsageError, match="inclusion bits"):
        one_run_audit(np.zeros(3), np.zeros(4, bool), r_plus=1, r_minus=1)
    assert math.isfinite(epsilon_lower_bound(m=200, r=50, v=50))
