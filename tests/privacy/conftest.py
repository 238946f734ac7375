"""Shared phantom fixtures for the privacy tests (built once per session, small: 64 subjects × 3 slices × 2 phases at 32²)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def phantom_split():
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.data.splits import SplitFractions, split_patients

    ds = make_phantom(PhantomConfig(subjects=64, slices=3, size=32), seed=0)
    sp = split_patients(ds, seed=0, fractions=SplitFractions(0.5, 0.25, 0.25)).apply(ds)
    return sp["train"], sp["holdout"], sp["test"]


@pytest.fixture(scope="session")
def fitted_spaces(phantom_split):
    from cmraudit.features import fit_features

    train, holdout, _ = phantom_split
    pool = np.concatenate([train.images, holdout.images])
    return (fit_features("pixel", seed=0, size=32), fit_features("domain", pool=pool, seed=0))
