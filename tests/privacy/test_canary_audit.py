"""Canary-patient DP audit (issue 19): ε̂ ≤ ε under DP; ε̂ > 0 with the canaries found for a non-DP overfit model."""

from __future__ import annotations

import numpy as np
import pytest

from cmraudit.errors import UsageError
from cmraudit.privacy.canary import canary_audit
from cmraudit.dp import DPConfig


@pytest.fixture(scope="module")
def canary_data():
    from cmraudit.data.phantom import PhantomConfig, make_phantom

    return make_phantom(PhantomConfig(subjects=32, slices=1, size=32), seed=0)  # 32 patients × 2 slices (ED, ES)


def _ddpm(steps):
    from cmraudit.generators.registry import get_plugin

    cls = get_plugin("ddpm").cls
    return lambda: cls.from_preset("micro", steps=steps, mask_steps=1, device="cpu")


@pytest.mark.parametrize("attack", ["loss", "auto"])
def test_non_dp_overfit_model_is_caught(canary_data, attack):
    # 8 base + ~12 included of 24 canary patients, micro DDPM 800 steps: it memorises its few patients.
    # Measured: loss 11 of 12 guesses right (ε̂ ≈ 0.67); auto (grad_norm) 10 of 12.
    r = canary_audit(make_generator=_ddpm(800), data=canary_data, canaries=24, seed=0, attack=attack)
    d = r.to_dict()
    assert d["m"] == 24 and d["guesses"] == 12 and d["epsilon_claimed"] is None and not d["falsified"]
    assert d["attack"] == ("grad_norm" if attack == "auto" else "loss")
    assert d["correct"] >= 10 and r.epsilon_lower_bound > 0  # canaries found
    inc = np.array([c["included"] for c in d["canaries"]])
    assert np.array_equal(inc, r.included) and d["n_train_patients"] == 8 + inc.sum()
    ins = [c["score"] for c in d["canaries"] if c["included"]]
    outs = [c["score"] for c in d["canaries"] if not c["included"]]
    assert np.mean(ins) > np.mean(outs)


@pytest.mark.parametrize("epsilon", [1.0, 8.0])
def test_dp_models_are_not_falsified(canary_data, epsilon):
    r = canary_audit(
        make_generator=_ddpm(40), data=canary_data, canaries=24, seed=0, dp=DPConfig(epsilon=epsilon, delta=1e-3)
    )
    d = r.to_dict()
    assert 0.99 * epsilon <= d["epsilon_claimed"] <= epsilon  # the joint accountant's ε of the run
    assert d["epsilon_lower_bound"] <= epsilon and not d["falsified"]
    assert d["delta"] == pytest.approx(1e-3)


def test_bad_canary_count(canary_data):
    with pytest.raises(UsageError, match="--canaries 31"):
        canary_audit(make_generator=_ddpm(1), data=canary_data, canaries=31, seed=0)


def test_dp_audit_cli(tmp_path, capsys):
    import json

    from cmraudit.cli.main import main

    args = [
        "dp-audit",
        "--generator",
        "ddpm",
        "--preset",
        "micro",
        "--subjects",
        "24",
        "--canaries",
        "16",
        "--device",
        "cpu",
        "--set",
        "steps=20",
        "--set",
        "mask_steps=1",
        "--dp-epsilon",
        "8",
        "--dp-delta",
        "1e-3",
        "--out",
        str(tmp_path),
    ]
    assert main(["--quiet", *args]) == 0, capsys.readouterr().err
    block = json.loads((tmp_path / "dp_audit.json").read_text())["dp_audit"]
    assert block["m"] == 16 and block["guesses"] == 8 and len(block["canaries"]) == 16
    assert (
        7.92 <= block["epsilon_claimed"] <= 8.0 and block["epsilon_lower_bound"] <= 8.0 and block["falsified"] is False
    )
    assert main(args) == 2 and "already there" in capsys.readouterr().err  # never replaces without --overwrite
    assert (
        main(
            [
                "dp-audit",
                "--generator",
                "copycat",
                "--preset",
                "micro",
                "--dp-epsilon",
                "8",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )


def test_distinctive_canaries_carry_their_own_pattern(canary_data):
    from cmraudit.privacy.canary import stamp_canaries

    pids = np.asarray(canary_data.patient_id).astype(str)
    cids = sorted(set(pids))[:3]
    a = stamp_canaries(canary_data, cids, seed=4, strength=0.3)
    b = stamp_canaries(canary_data, cids, seed=4, strength=0.3)
    assert np.array_equal(a.images, b.images)  # seeded
    assert np.array_equal(np.asarray(canary_data.images)[~np.isin(pids, cids)], a.images[~np.isin(pids, cids)])
    diffs = []
    for p in cids:
        sel = np.flatnonzero(pids == p)
        d = a.images[sel] - np.asarray(canary_data.images)[sel]
        inside = (np.abs(a.images[sel]) < 1).all(0)  # pixels that no clipping touched on any slice of p
        assert np.allclose(d[0][inside], d[1][inside], atol=1e-6)  # one pattern per patient, on every slice
        assert 0.2 < d[0][inside].std() < 0.4
        diffs.append(d[0][inside])
    n = min(len(diffs[0]), len(diffs[1]))
    c = np.corrcoef(diffs[0][:n], diffs[1][:n])[0, 1]
    assert abs(c) < 0.9  # different canaries, different patterns
    with pytest.raises(UsageError, match="--distinctive"):
        canary_audit(make_generator=_ddpm(1), data=canary_data, canaries=4, seed=0, distinctive=-1)


def test_auto_attack_is_the_strongest_offered():
    from cmraudit.generators.registry import get_plugin
    from cmraudit.privacy.canary import strongest_attack

    assert strongest_attack(get_plugin("ddpm").cls.from_preset("micro")) == "grad_norm"
    assert strongest_attack(get_plugin("fm").cls.from_preset("micro")) == "grad_norm"
    assert strongest_attack(get_plugin("ldm").cls.from_preset("micro")) == "loss"  # no parameter_gradients hook
