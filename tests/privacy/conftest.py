"""Shared phantom fixtures for the privacy tests (built once per session, small: 64 subjects × 3 slices × 2 phases at
32²)."""

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


@pytest.fixture
def tiny_registered(tmp_path_factory, monkeypatch):
    """TinyGenerator registered as generator ``tinygen`` through a fake installed distribution (an entry point in
    ``cmraudit.generators``, found in this process and in spawned workers), as shadow models resolve by name."""
    from cmraudit.registry import GENERATORS

    root = tmp_path_factory.mktemp("tinygen-dist")
    d = root / "cmraudit_tinygen-0.1.dist-info"
    d.mkdir()
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: cmraudit-tinygen\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text("[cmraudit.generators]\ntinygen = tests.privacy.tinygen:TinyGenerator\n")
    monkeypatch.syspath_prepend(str(root))
    GENERATORS.refresh()
    yield root
    GENERATORS.refresh()
