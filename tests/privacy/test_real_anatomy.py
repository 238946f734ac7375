"""The auditor on real anatomy (issue 9, point 4): Sunnybrook cine slices, split by patient.

Sunnybrook subset: 5 patients, 96 contoured slices, imported at 64² (128-px crop). Patient split:
2 train (members), 2 holdout (non-members, calibration), 1 test (the source of novel slices).
Copycat planted at 50 % under every copy transform (cmraudit.data.copy_transforms; 3 train / 1 holdout / 1 novel
patients for the registered search): recall ≥ 0.95 per transform in the registered space (the copy decision).
Novel slices of the unseen test patient (the `holdout` reference generator) are not flagged: their copy-rate CI
includes 0 in every space.
"""
from __future__ import annotations

import numpy as np
import pytest

from cmraudit.data import read_dataset
from cmraudit.data.importers import import_sunnybrook
from cmraudit.data.preprocess import PreprocessConfig
from cmraudit.features import extract_features, fit_features
from cmraudit.fidelity.frechet import compute_frechet_distance
from cmraudit.generators.reference import HoldoutGenerator
from cmraudit.privacy import AuditConfig, audit_privacy

from ..data.sunnybrook_data import SUNNYBROOK, requires_sunnybrook

pytestmark = requires_sunnybrook


@pytest.fixture(scope="module")
def sunnybrook_split(tmp_path_factory):
    out = tmp_path_factory.mktemp("sb") / "sunnybrook64"
    import_sunnybrook(SUNNYBROOK, out=out, config=PreprocessConfig(crop=128, size=64), progress=False)
    ds = read_dataset(out, mmap=False)
    patients = sorted(str(p) for p in ds.patients)
    assert len(patients) == 5 and len(ds) == 96
    # fixed by-patient split (5 patients are too few for a stratified random split to be informative)
    train = ds.select_patients(patients[:2])
    holdout = ds.select_patients(patients[2:4])
    test = ds.select_patients(patients[4:])
    assert not set(train.patient_id) & set(holdout.patient_id) and not set(test.patient_id) & set(train.patient_id)
    return train, holdout, test


@pytest.fixture(scope="module")
def spaces(sunnybrook_split):
    train, holdout, _ = sunnybrook_split
    pool = np.concatenate([train.images, holdout.images])
    return fit_features("pixel", seed=0, size=32), fit_features("domain", pool=pool, seed=0)


def test_copies_of_real_slices_are_found_under_every_transform(sunnybrook_split):
    """Real anatomy: 3 train patients, 1 holdout (calibration), 1 novel; 44 copies per transform over 4 seeds."""
    from cmraudit.data.copy_transforms import COPY_TRANSFORMS
    from cmraudit.testing.copies import copy_trial

    train, holdout, test = sunnybrook_split
    from cmraudit.data import Dataset

    ds = Dataset.concat([train, holdout, test])
    found = {t: [] for t in COPY_TRANSFORMS}
    for seed in range(4):
        tr = copy_trial(seed, images=np.asarray(ds.images), patients=ds.patient_id.astype(str), split=(3, 1, 1),
                        n_synthetic=200, rates=(0.5,))
        assert tr["novel_flags"] == 0, tr["novel_flag_patients"]
        for c in tr["copies"]:
            found[c["transform"]].append(c["found"])
    recall = {t: float(np.mean(v)) for t, v in found.items()}
    assert all(len(v) >= 20 for v in found.values())
    assert min(recall.values()) >= 0.95, recall


def test_novel_real_slices_are_not_flagged(sunnybrook_split, spaces):
    train, holdout, test = sunnybrook_split
    syn = HoldoutGenerator().fit(train, seed=0, reference=test).sample(n=len(test), seed=1)
    res = audit_privacy(train=train, holdout=holdout, synthetic=syn, features=spaces, seed=0,
                        config=AuditConfig(attacks=(), masks=False, n_resamples=200, registered=False), progress=False)
    n_cal = len(holdout)
    for name, cr in res.feature_spaces.items():
        rate = cr.copy_detection["copy_rate"]
        assert rate.ci[0] == 0.0, (name, rate)
        # the calibrated threshold's effective FPR on n_cal calibration slices is at most 1/n_cal
        assert cr.per_slice["copy"].mean() <= max(1.0 / n_cal, 0.05), (name, cr.per_slice["copy"].mean())


def test_frechet_real_vs_real_small_next_to_real_vs_phantom(sunnybrook_split):
    from cmraudit.data.phantom import PhantomConfig, make_phantom

    train, holdout, test = sunnybrook_split
    a = train  # 2 patients
    b = holdout  # 2 other patients
    n = min(len(a), len(b))
    phantom = make_phantom(PhantomConfig(subjects=12, slices=4, size=64), seed=0)
    rng = np.random.default_rng(0)
    ph = phantom.subset(rng.choice(len(phantom), size=n, replace=False))
    fa, fb, fp = extract_features("pixel", a.subset(np.arange(n)), b.subset(np.arange(n)), ph, seed=0, size=8)
    real_real = compute_frechet_distance(fa, fb)
    real_phantom = compute_frechet_distance(fa, fp)
    assert real_real < 0.5 * real_phantom, (real_real, real_phantom)
