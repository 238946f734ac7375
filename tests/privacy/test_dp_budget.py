"""Joint noise calibration: the whole generator spends the ε asked for (issue 19), split by stage weights."""

from __future__ import annotations

import pytest

from cmraudit.errors import UsageError
from cmraudit.dp import DPConfig, compute_epsilon
from cmraudit.dp.accounting import _epsilon_of_history
from cmraudit.dp.budget import calibrate_noise, parse_split, stage_weights

# (q, planned steps) per stage: the micro preset on 5 patients and the quick preset on ~64 patients
MICRO = {"mask_model": (0.8, 6), "image_model": (0.8, 6)}
QUICK = {"mask_model": (0.125, 800), "image_model": (0.125, 400)}


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
@pytest.mark.parametrize("epsilon", [1.0, 8.0])
@pytest.mark.parametrize("plan", [MICRO, QUICK], ids=["micro", "quick"])
def test_joint_epsilon_within_one_percent(plan, epsilon, accountant):
    sig, eps = calibrate_noise(epsilon=epsilon, delta=1e-5, accountant=accountant, stages=plan)
    # recomputed independently from the returned σ: the same joint accounting compose_budget reports
    joint = _epsilon_of_history([(sig[s], q, t) for s, (q, t) in plan.items()], delta=1e-5, accountant=accountant)
    assert joint == pytest.approx(eps)
    assert 0.99 * epsilon <= joint <= epsilon


def test_joint_calibration_spends_more_than_the_even_basic_split():
    # the old way: ε/2 per stage, each calibrated alone → the joint accountant reports well under ε
    old = DPConfig(epsilon=8.0).split(list(QUICK))
    from cmraudit.dp import noise_multiplier_for

    sig_old = {
        s: noise_multiplier_for(
            epsilon=c.epsilon, delta=c.delta, sample_rate=QUICK[s][0], steps=QUICK[s][1], accountant="prv"
        )
        for s, c in old.items()
    }
    joint_old = _epsilon_of_history([(sig_old[s], q, t) for s, (q, t) in QUICK.items()], delta=1e-5, accountant="prv")
    new = DPConfig(epsilon=8.0).calibrate(QUICK)
    assert joint_old < 7.5  # budget left unspent
    assert all(new[s].noise_multiplier < sig_old[s] for s in QUICK)  # less noise in every stage at the same ε


def test_split_weights_move_noise_between_stages():
    even, _ = calibrate_noise(epsilon=8.0, delta=1e-5, accountant="prv", stages=MICRO)
    w = stage_weights(parse_split("mask=0.3,image=0.7"), list(MICRO))
    assert w == pytest.approx({"mask_model": 0.3, "image_model": 0.7})
    skew, eps = calibrate_noise(epsilon=8.0, delta=1e-5, accountant="prv", stages=MICRO, weights=w)
    assert even["image_model"] == pytest.approx(even["mask_model"])
    assert skew["image_model"] < even["image_model"] and even["mask_model"] < skew["mask_model"]
    assert 7.92 <= eps <= 8.0


def test_calibrated_stage_configs():
    cfgs = DPConfig(epsilon=1.0, delta=1e-5, split_weights="mask=1,image=3").calibrate(QUICK)
    assert set(cfgs) == set(QUICK)
    for s, c in cfgs.items():
        assert c.delta == pytest.approx(5e-6) and c.noise_multiplier > 0
        # each stage's epsilon is what it spends alone with its σ
        assert c.epsilon == pytest.approx(
            compute_epsilon(
                noise_multiplier=c.noise_multiplier,
                sample_rate=QUICK[s][0],
                steps=QUICK[s][1],
                delta=c.delta,
                accountant="prv",
            )
        )
    assert cfgs["image_model"].epsilon > cfgs["mask_model"].epsilon


def test_bad_split_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown stage 'decoder'"):
        parse_split("decoder=1")
    with pytest.raises(UsageError, match="must be a number > 0"):
        parse_split("mask=0,image=1")
    with pytest.raises(UsageError, match="STAGE=WEIGHT"):
        parse_split("mask")
    with pytest.raises(UsageError, match="missing: image_model"):
        stage_weights(parse_split("mask=1"), ["mask_model", "image_model"])
    with pytest.raises(UsageError, match="not a stage here: autoencoder"):
        stage_weights(parse_split("mask=1,image=1,ae=1"), ["mask_model", "image_model"])
    with pytest.raises(UsageError, match="--dp-split .* needs --dp-epsilon"):
        DPConfig.from_options(None, split="mask=1,image=1")
    with pytest.raises(UsageError, match="noise_multiplier"):
        DPConfig(epsilon=1.0, noise_multiplier=-1.0)
