"""Registered diffusion-structure attacks (issue 19): hooks, registry, scores on micro models, audit selection."""

from __future__ import annotations

import numpy as np
import pytest

from cmraudit.errors import UsageError
from cmraudit.privacy.config import AuditConfig
from cmraudit.privacy.mia.attacks import ATTACKS, attack_names, get_attack, missing_hooks
from cmraudit.privacy.mia.attacks.run import run_attacks, split_reference

REGISTERED_ATTACKS = ("pia", "pian", "secmi", "sima", "sima_mc", "conditional_gap", "flow_gap", "grad_norm")


@pytest.fixture(scope="module")
def micro_data():
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.data.splits import SplitFractions, split_patients

    ds = make_phantom(PhantomConfig(subjects=24, slices=2, size=32), seed=1)
    sp = split_patients(ds, seed=1, fractions=SplitFractions(0.5, 0.5, 0.0)).apply(ds)
    return sp["train"], sp["holdout"]


@pytest.fixture(scope="module")
def micro_models(micro_data):
    from cmraudit.generators.registry import get_plugin

    train, _ = micro_data
    out = {}
    for name in ("ddpm", "fm"):
        g = get_plugin(name).cls.from_preset("micro", steps=60, mask_steps=1, device="cpu")
        out[name] = g.fit(train, seed=0, progress=False)
    return out


def test_registry_matches_config_and_declares_needs():
    assert attack_names() == REGISTERED_ATTACKS  # the hook attacks, in the one attack registry
    assert ATTACKS.names()[:4] == ("gan_leaks", "domias", "loss", "fcre")
    for name in attack_names():
        a = get_attack(name)
        assert a.name == name and a.needs and a.queries_per_slice() >= 1
        assert set(a.info()) >= {"threat_model", "needs", "params", "queries_per_slice"}
    assert get_attack("secmi").queries_per_slice() == 12 and get_attack("pia").queries_per_slice() == 2
    with pytest.raises(UsageError, match="unknown attack 'nope'"):
        get_attack("nope")
    with pytest.raises(UsageError, match="unknown parameter"):
        get_attack("pia", t=3)
    with pytest.raises(UsageError, match="unknown attacks"):
        AuditConfig(attacks=("pia", "nope"))


def test_plugins_declare_hooks():
    from cmraudit.generators.registry import get_plugin

    assert "noise_prediction" in get_plugin("ddpm").cls.tags.hooks
    assert {"noise_prediction", "velocity_loss"} <= set(get_plugin("fm").cls.tags.hooks)
    ldm = get_plugin("ldm").cls
    assert missing_hooks(ldm, get_attack("pia")) == ["noise_prediction"]
    assert missing_hooks(get_plugin("ddpm").cls, get_attack("flow_gap")) == ["velocity_loss"]


@pytest.mark.parametrize("name", ["ddpm", "fm"])
def test_noise_prediction_hook_inverts_the_forward_process(micro_models, micro_data, name):
    g = micro_models[name]
    x0 = np.asarray(micro_data[0].images[:3], np.float32)
    m = np.asarray(micro_data[0].masks[:3])
    a0, s0 = g.noise_schedule(0)
    a1, s1 = g.noise_schedule(999)
    assert a0 > 0.99 and s0 < 0.05 and a1 < 0.05 and s1 > 0.99  # 0 = clean … T-1 = noise
    eps = np.random.default_rng(0).standard_normal(x0.shape).astype(np.float32)
    a, s = g.noise_schedule(500)
    e_hat = g.predict_noise(a * x0 + s * eps, m, t=500)
    assert e_hat.shape == x0.shape and np.isfinite(e_hat).all()
    # deterministic, and batch-independent
    assert np.allclose(e_hat[1:], g.predict_noise(a * x0[1:] + s * eps[1:], m[1:], t=500), atol=1e-5)
    if name == "fm":  # ε̂ = x_u − u·v̂ is the velocity loss rewritten: ‖ε̂ − ε‖ = u·‖v̂ − (x1 − x0)‖
        u = 0.5
        v_err = np.mean((e_hat - eps) ** 2, axis=(1, 2)) / u**2
        assert np.isfinite(v_err).all()
    with pytest.raises(UsageError, match="t must be one integer"):
        g.predict_noise(x0, m, t=1000)


@pytest.mark.parametrize("name", sorted(REGISTERED_ATTACKS))
def test_each_attack_scores_a_micro_model(micro_models, micro_data, name):
    train, holdout = micro_data
    attack = get_attack(name)
    gen = micro_models["fm" if name == "flow_gap" else "ddpm"]
    ref, cand_h = split_reference(holdout, holdout, seed=0)
    from cmraudit.data.dataset import Dataset

    cand = Dataset.concat([train, cand_h])
    s1 = attack.score(gen, cand, 3, reference=ref)
    assert s1.shape == (len(cand),) and np.isfinite(s1).all() and np.std(s1) > 0
    assert np.array_equal(s1, attack.score(gen, cand, 3, reference=ref))  # same seed → same scores


def test_holdout_reference_generator_all_cis_contain_half(micro_models, micro_data):
    """A model that never saw the 'members': every attack's patient-level AUC CI contains 0.5.

    All intervals (every applicable attack on ddpm and on fm) are checked together, so each is a Bonferroni
    1 − 0.05/n interval (family-wise 95 %): at 95 % each, about half of such runs would miss 0.5 somewhere by
    chance alone.
    """
    from contextlib import nullcontext

    from cmraudit.privacy.mia.interface import subsample_patients

    from cmraudit.data.phantom import PhantomConfig, make_phantom

    # the micro models were trained on other patients: both candidate groups (40 fresh phantom subjects) are unseen
    unseen = make_phantom(PhantomConfig(subjects=40, slices=2, size=32), seed=7)
    pats = np.random.default_rng(0).permutation(
        np.unique(unseen.patient_id.astype(str))
    )  # (index order alternates vendors)
    fake_members = unseen.select_patients(pats[::2])
    nonmembers = unseen.select_patients(pats[1::2])
    applicable = {
        g: [n for n in REGISTERED_ATTACKS if not missing_hooks(micro_models[g], get_attack(n))] for g in ("ddpm", "fm")
    }
    n_intervals = sum(len(v) for v in applicable.values())
    for gname, names in applicable.items():
        res = run_attacks(
            names,
            generator=micro_models[gname],
            train=fake_members,
            holdout=nonmembers,
            seed=0,
            cap=10_000,
            subsample=subsample_patients,
            steps=lambda _: nullcontext(),
            ev=dict(seed=0, n_resamples=2000, confidence=1 - 0.05 / n_intervals),
        )
        for n in names:
            r = res[n].to_dict() if hasattr(res[n], "to_dict") else res[n]
            if r.get("status") == "skipped":
                continue
            lo, hi = r["patient"]["auc"]["ci"]
            assert lo <= 0.5 <= hi, (gname, n, r["patient"]["auc"])


def test_audit_skips_with_a_reason(micro_models, micro_data):
    from contextlib import nullcontext

    from cmraudit.privacy.mia.interface import subsample_patients

    train, holdout = micro_data
    kw = dict(
        train=train,
        holdout=holdout,
        seed=0,
        cap=100,
        subsample=subsample_patients,
        steps=lambda _: nullcontext(),
        ev=dict(seed=0, n_resamples=50),
    )
    out = run_attacks(["pia"], generator=None, **kw)
    assert out["pia"]["status"] == "skipped" and "--model" in out["pia"]["reason"]
    out = run_attacks(["flow_gap"], generator=micro_models["ddpm"], **kw)
    assert out["flow_gap"]["status"] == "skipped" and "velocity_loss" in out["flow_gap"]["reason"]


def test_audit_cli_attacks_option_writes_every_block_and_roc(tmp_path, micro_models, micro_data, capsys):
    import json

    from cmraudit.cli.main import main
    from cmraudit.data.dataset import write_dataset
    from cmraudit.report.html import render_html
    from cmraudit.report.walk import roc_curves

    train, holdout = micro_data
    for name, ds in (("train", train), ("holdout", holdout), ("syn", holdout)):
        write_dataset(ds, tmp_path / name)
    micro_models["ddpm"].save(tmp_path / "run" / "model")
    names = ["pia", "secmi", "sima", "conditional_gap"]
    args = [
        "-q",
        "audit",
        "--train",
        str(tmp_path / "train"),
        "--holdout",
        str(tmp_path / "holdout"),
        "--synthetic",
        str(tmp_path / "syn"),
        "--model",
        str(tmp_path / "run"),
        "--feature",
        "pixel",
        "--resamples",
        "50",
    ]
    rc = main(args + ["--attacks", ",".join(names), "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    for n in names:
        block = rep["privacy"]["mia"][n]
        assert block["patient"]["auc"]["unit"] == "patient" and "tpr_at_1pct_fpr" in block["slice"]
        assert block["info"]["queries_per_slice"] >= 1 and block["info"]["seconds_per_slice"] > 0
    assert "loss" not in rep["privacy"]["mia"]  # only what was asked for
    assert set(roc_curves(rep["privacy"])["patient"]) == set(names)
    html = render_html(tmp_path / "out").read_text()
    assert "ROC patient" in html or "membership inference" in html
    assert main(args + ["--attacks", "pia,nope", "--out", str(tmp_path / "bad")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "bad" / "report.json").exists()


def test_lira_with_a_registered_attack_as_its_statistic(tmp_path, micro_models, micro_data):
    from cmraudit.errors import ConfigError
    from cmraudit.privacy.config import ShadowConfig
    from cmraudit.privacy.mia.shadow import run_shadow_attacks

    train, holdout = micro_data
    target = micro_models["ddpm"]
    cfg = ShadowConfig(k=2, executor="inline", modes=("online",), workdir=str(tmp_path / "sh"), score_attack="sima",
                       params=target.get_params() | {"steps": 5})
    kw = dict(target=target, train=train, holdout=holdout, reference=None, timesteps=(100,), workdir=tmp_path / "sh",
              seed=0, n_resamples=50)
    res = run_shadow_attacks(config=cfg, **kw)
    r = res["lira_online"].to_dict()
    assert r["info"]["score_attack"] == "sima" and 0 <= r["patient"]["auc"]["value"] <= 1
    shadows = sorted((tmp_path / "sh").glob("online_*"))
    assert len(shadows) == 2 and all((d / "scores_sima.npy").is_file() for d in shadows)
    # the target's own statistic: shadows rescored from their saved models give the same numbers (idempotent)
    again = run_shadow_attacks(config=cfg, **kw)["lira_online"].to_dict()
    assert again["patient"]["auc"] == r["patient"]["auc"]
    with pytest.raises(ConfigError, match="score_attack"):
        ShadowConfig(score_attack="flow_gap")
    ldm_like = type("T", (), {"tags": type("G", (), {"hooks": ("loss",), "has_loss": True})()})()
    out = run_shadow_attacks(config=cfg, **(kw | {"target": ldm_like}))
    assert out["lira_online"]["status"] == "skipped" and "noise_prediction" in out["lira_online"]["reason"]
