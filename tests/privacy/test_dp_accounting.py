"""Accounting: golden ε values from Opacus's own tests, composition, DPConfig validation."""
from __future__ import annotations

import json
import math

import pytest

from cmraudit.errors import PluginError, UsageError
from cmraudit.generators.base import GeneratorTags
from cmraudit.dp import (
    DPConfig,
    StageBudget,
    compose_budget,
    compute_epsilon,
    noise_multiplier_for,
    require_dp_support,
)

GOLDEN = dict(noise_multiplier=1.5, sample_rate=0.04, delta=1e-5)


def test_golden_rdp_epsilon():
    # Opacus tests/accountants_test.py::test_rdp_accountant: steps = int(90 / 0.04) = 2250 -> 7.32911117143
    eps = compute_epsilon(**GOLDEN, steps=2250, accountant="rdp")
    assert round(eps, 3) == 7.329


def test_golden_prv_epsilon():
    # Opacus tests/accountants_test.py::test_prv_accountant uses steps = int(90 // 0.04), which is 2249
    # (floating-point floor division), and asserts 6.777395712150674.
    assert int(90 // 0.04) == 2249
    assert round(compute_epsilon(**GOLDEN, steps=2249, accountant="prv"), 3) == 6.777
    # At exactly 2250 steps the PRV upper bound is 6.779 (one step more than Opacus's test case).
    assert round(compute_epsilon(**GOLDEN, steps=2250, accountant="prv"), 3) == 6.779


def test_epsilon_monotone_and_edge_cases():
    base = dict(sample_rate=0.05, delta=1e-5, accountant="rdp")
    assert compute_epsilon(noise_multiplier=1.0, steps=0, **base) == 0.0
    assert math.isinf(compute_epsilon(noise_multiplier=0.0, steps=10, **base))
    e_100 = compute_epsilon(noise_multiplier=1.0, steps=100, **base)
    e_400 = compute_epsilon(noise_multiplier=1.0, steps=400, **base)
    e_400_more_noise = compute_epsilon(noise_multiplier=2.0, steps=400, **base)
    assert 0 < e_100 < e_400
    assert e_400_more_noise < e_400
    with pytest.raises(UsageError, match="sample_rate"):
        compute_epsilon(noise_multiplier=1.0, steps=10, sample_rate=1.5, delta=1e-5, accountant="rdp")
    with pytest.raises(UsageError, match="--accountant 'gdp'"):
        compute_epsilon(noise_multiplier=1.0, steps=10, sample_rate=0.1, delta=1e-5, accountant="gdp")


def test_noise_multiplier_reaches_target_tightly():
    kw = dict(delta=1e-5, sample_rate=0.05, steps=1000, accountant="rdp")
    sigma = noise_multiplier_for(epsilon=4.0, **kw)
    assert compute_epsilon(noise_multiplier=sigma, **kw) <= 4.0
    # Opacus's binary search stops within 0.01 of the target: a slightly smaller sigma overshoots.
    assert compute_epsilon(noise_multiplier=sigma * 0.97, **kw) > 4.0
    with pytest.raises(UsageError, match="--dp-epsilon"):
        noise_multiplier_for(epsilon=1e-9, delta=1e-5, sample_rate=1.0, steps=10**6, accountant="rdp")


def _stage(name, steps=500, sigma=1.2, q=0.05, acc="rdp", delta=5e-6):
    return StageBudget(name=name, epsilon=compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps,
                                                          delta=delta, accountant=acc),
                       delta=delta, accountant=acc, noise_multiplier=sigma, sample_rate=q, steps=steps,
                       max_grad_norm=1.0, target_epsilon=4.0, n_patients=160, expected_batch_size=q * 160)


def test_compose_single_stage_is_its_own_budget():
    s = _stage("image_model")
    block = compose_budget([s])
    assert block["unit"] == "patient"
    assert block["epsilon"] == pytest.approx(s.epsilon, rel=1e-9)
    assert block["delta"] == s.delta and block["accountant"] == "rdp" and block["patient_level"] is True
    assert block["per_stage"] == {"image_model": pytest.approx(s.epsilon)}
    assert block["stages"]["image_model"]["steps"] == 500
    assert block["stages"]["image_model"]["sample_rate"] == 0.05
    json.dumps(block, allow_nan=False)
    # The block satisfies the report schema's generator.dp contract.
    from cmraudit.report.schema import DP_REQUIRED

    for key, typ in DP_REQUIRED.items():
        assert isinstance(block[key], typ), key


def test_compose_two_stages_joint_accountant_beats_sum():
    a, b = _stage("mask_model"), _stage("image_model")
    block = compose_budget([a, b])
    # Same sigma and q: the joint history equals one run of 2x the steps, at delta_total = sum of deltas.
    joint = compute_epsilon(noise_multiplier=1.2, sample_rate=0.05, steps=1000, delta=1e-5, accountant="rdp")
    assert block["delta"] == pytest.approx(1e-5)
    assert block["epsilon"] == pytest.approx(joint, rel=1e-9)
    assert block["epsilon"] < a.epsilon + b.epsilon == pytest.approx(block["basic_composition"]["epsilon"])
    assert block["target_epsilon"] == 8.0
    assert block["composition"].startswith("rdp accountant")
    assert set(block["stages"]) == {"mask_model", "image_model"}


def test_compose_mixed_accountants_falls_back_to_basic():
    a, b = _stage("mask_model", acc="rdp"), _stage("image_model", acc="prv")
    block = compose_budget([a, b])
    assert block["epsilon"] == pytest.approx(a.epsilon + b.epsilon)
    assert block["composition"].startswith("basic")


def test_compose_with_non_private_stage_is_refused():
    with pytest.raises(PluginError, match="autoencoder.*without DP"):
        compose_budget([_stage("image_model"), StageBudget.non_private("autoencoder")])
    assert StageBudget.non_private("autoencoder").to_dict()["epsilon"] is None  # JSON-safe, no inf
    with pytest.raises(UsageError, match="duplicate"):
        compose_budget([_stage("x"), _stage("x")])


def test_dpconfig_validation_collects_every_problem():
    with pytest.raises(UsageError) as err:
        DPConfig(epsilon=-1, delta=2.0, max_grad_norm=0, accountant="moments", noise_multiplicity=0)
    msg = str(err.value)
    for option in ("--dp-epsilon", "--dp-delta", "--max-grad-norm", "--accountant", "--noise-multiplicity"):
        assert option in msg


def test_dpconfig_inf_means_no_dp_and_split():
    assert DPConfig.from_options(None) is None
    assert DPConfig.from_options(float("inf")) is None
    assert DPConfig(epsilon=float("inf")).enabled is False
    cfg = DPConfig.from_options(8.0, delta=1e-5, accountant="rdp")
    assert cfg.enabled and cfg.to_dict()["epsilon"] == 8.0
    parts = cfg.split(["mask_model", "image_model"])
    assert sum(p.epsilon for p in parts.values()) == pytest.approx(8.0)
    assert sum(p.delta for p in parts.values()) == pytest.approx(1e-5)
    assert all(p.accountant == "rdp" for p in parts.values())


def test_generator_without_dp_support_refuses_dp_epsilon():
    dp = DPConfig(epsilon=4.0)
    with pytest.raises(UsageError, match="does not support DP.*--dp-epsilon|--dp-epsilon.*does not support DP"):
        require_dp_support(name="copycat", tags=GeneratorTags(supports_dp=False), dp=dp)
    require_dp_support(name="ddpm", tags=GeneratorTags(supports_dp=True), dp=dp)  # accepted
    require_dp_support(name="copycat", tags=GeneratorTags(supports_dp=False), dp=None)  # no DP asked
