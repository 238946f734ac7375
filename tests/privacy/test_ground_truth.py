"""The auditor's ground truth (DESIGN.md § 6): planted copies must be caught, a private generator must pass.

Phantom: 64 subjects × 3 slices × 2 phases at 32² (seed 0), patient split 50/25/25 →
32 train patients (192 slices), 16 holdout (96), 16 test (96; source of the novel images).
Synthetic sets: 300 slices (3, 6, 15 planted copies; 200 slices for rotation / shift). Spaces: pixel, domain, and for rotation / shift also
registered (the test passes when one space meets recall ≥ 0.95 with a CI containing the planted rate). Calibrated FPR α = 1e-3 (effective bound 1/97 with 96 holdout slices).
"""
from __future__ import annotations

import numpy as np
import pytest

from cmraudit.generators.reference import CopycatGenerator, HoldoutGenerator
from cmraudit.privacy import AuditConfig, audit_privacy

N_SYN = 300
COPY_ONLY = AuditConfig(attacks=(), masks=False, n_resamples=100, registered=False)
# rotations and shifts need the registered space (domain candidates re-ranked over flips × rotations × shifts)
REGISTERED = AuditConfig(attacks=(), masks=False, n_resamples=100, registered=True)


def _audit(train, holdout, syn, spaces, config=COPY_ONLY):
    return audit_privacy(train=train, holdout=holdout, synthetic=syn, features=spaces, seed=0, config=config, progress=False)


# measured: the registered space catches every rotated/shifted copy (recall 1.0) but flags novel slices of test
# patients at ~2-3 %, above the slice-level FPR 1/97: flagged slices cluster in the few test patients who resemble a
# training patient. The copy-rate CI's lower end therefore uses a patient-level bound on the threshold's FPR
# (Beta(k_p, 16 + 1 - k_p) over the 16 holdout patients, >= 17 %), so it stays valid.


@pytest.mark.parametrize("transform", ["exact", "flip", "rotation", "shift", "noise"])
def test_copycat_planted_rates_are_caught(phantom_split, fitted_spaces, transform):
    train, holdout, test = phantom_split
    for rate in (0.01, 0.02, 0.05):
        gen = CopycatGenerator(rate=rate, transforms=transform, max_rotation_deg=20, max_shift_px=4, noise_sigma=0.05)
        n_syn = 200 if transform in ("rotation", "shift") else N_SYN  # registered search: bound the test time
        syn = gen.fit(train, seed=0, reference=test).sample(n=n_syn, seed=int(rate * 1000))
        truth = gen.last_sample_info_["is_copy"]
        assert truth.sum() == round(rate * n_syn)
        cfg = REGISTERED if transform in ("rotation", "shift") else COPY_ONLY
        res = _audit(train, holdout, syn, fitted_spaces[:2], cfg)
        ok = []
        for name, cr in res.feature_spaces.items():
            flag = cr.per_slice["copy"]
            recall = flag[truth].mean()
            ci = cr.copy_detection["copy_rate"].ci
            ok.append((name, recall, ci))
            if recall >= 0.95 and ci[0] <= rate <= ci[1]:
                break
        else:
            pytest.fail(f"{transform} at {rate:.0%}: no feature space with recall ≥ 0.95 and a CI containing the rate: {ok}")


def test_holdout_generator_passes(phantom_split, fitted_spaces):
    train, holdout, test = phantom_split
    syn = HoldoutGenerator().fit(train, seed=0, reference=test).sample(n=N_SYN, seed=1)
    res = _audit(train, holdout, syn, fitted_spaces[:2], AuditConfig(attacks=("gan_leaks", "domias"), n_resamples=300, registered=True))
    d = res.to_dict()
    assert set(d["feature_spaces"]) == {"pixel", "domain", "registered"}
    for name in ("pixel", "domain"):
        cr = d["feature_spaces"][name]["copy_detection"]["copy_rate"]
        assert cr["ci"][0] == 0.0, (name, cr)
    # registered: more false positives on novel patients than the point bound (measured above); the CI accounts for it
    reg = d["feature_spaces"]["registered"]["copy_detection"]
    assert reg["copy_rate"]["ci"][0] == 0.0 and reg["copy_rate"]["value"] < 0.05, reg["copy_rate"]
    for attack in ("gan_leaks_pixel", "gan_leaks_domain", "domias"):
        for level in ("slice", "patient"):
            lo, hi = d["mia"][attack][level]["auc"]["ci"]
            assert lo <= 0.5 <= hi, (attack, level, lo, hi)


def test_copycat_full_rate_is_a_perfect_member_oracle(phantom_split, fitted_spaces):
    train, holdout, _ = phantom_split
    syn = CopycatGenerator(rate=1.0).fit(train, seed=0).sample(n=len(train), seed=1)
    res = _audit(train, holdout, syn, fitted_spaces[:2], AuditConfig(attacks=("gan_leaks", "domias"), n_resamples=100, registered=False))
    d = res.to_dict()
    best = max(d["mia"][a]["slice"]["auc"]["value"] for a in ("gan_leaks_pixel", "gan_leaks_domain", "domias"))
    assert best >= 0.95
    assert d["mia"]["gan_leaks_pixel"]["patient"]["auc"]["value"] >= 0.95
    for sp in d["feature_spaces"].values():
        assert sp["copy_detection"]["copies_detected"] is True
        assert sp["copy_detection"]["patients_copied"]["value"] == 1.0


def test_pixel_flip_views_make_pixel_space_flip_invariant(phantom_split, fitted_spaces):
    train, holdout, test = phantom_split
    gen = CopycatGenerator(rate=0.05, transforms="flip")
    syn = gen.fit(train, seed=0, reference=test).sample(n=N_SYN, seed=5)
    truth = gen.last_sample_info_["is_copy"]
    plain = _audit(train, holdout, syn, fitted_spaces[:1]).feature_spaces["pixel"]
    flips = _audit(train, holdout, syn, fitted_spaces[:1], AuditConfig(attacks=(), masks=False, n_resamples=100,
                                                                      registered=False, pixel_views="flips")).feature_spaces["pixel"]
    assert plain.per_slice["copy"][truth].mean() < 0.5  # plain pixels miss most flipped copies
    assert flips.per_slice["copy"][truth].all() and flips.copy_detection["views"] == 4
    assert np.allclose(flips.per_slice["d1"][truth], 0, atol=0.05)  # float32 rounding of FAISS squared L2
