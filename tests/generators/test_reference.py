"""Reference generators: protocol, planted ground truth, transforms, reference-data rules, save/load."""
from __future__ import annotations

import numpy as np
import pytest

from cmraudit.data.dataset import Dataset
from cmraudit.errors import DataError, NotFittedError, UsageError
from cmraudit.generators.base import Generator
from cmraudit.generators.reference import CopycatGenerator, HoldoutGenerator, NoiseGenerator


def _ds(n_pat, prefix, seed, size=16):
    rng = np.random.default_rng(seed)
    n = 3 * n_pat
    imgs = rng.uniform(-1, 1, (n, size, size)).astype(np.float32)
    masks = rng.integers(0, 4, (n, size, size)).astype(np.uint8)
    return Dataset(images=imgs, masks=masks, patient_id=[f"{prefix}{i // 3}" for i in range(n)])


def test_protocol_and_not_fitted():
    for cls in (CopycatGenerator, HoldoutGenerator, NoiseGenerator):
        g = cls()
        assert isinstance(g, Generator)
        with pytest.raises(NotFittedError):
            g.sample(n=2, seed=0)


@pytest.mark.parametrize("transform", ["exact", "flip", "rotation", "shift", "noise"])
def test_copycat_plants_exact_rate_and_transforms(transform):
    train, ref = _ds(5, "t", 0), _ds(5, "r", 1)
    g = CopycatGenerator(rate=0.25, transforms=transform).fit(train, seed=0, reference=ref)
    syn = g.sample(n=40, seed=1)
    info = g.last_sample_info_
    assert len(syn) == 40 and info["is_copy"].sum() == 10
    assert set(info["transform"][info["is_copy"]]) == {transform}
    i = int(np.flatnonzero(info["is_copy"])[0])
    src = train.images[info["train_index"][i]]
    diff = np.abs(syn.images[i] - src).max()
    if transform == "exact":
        assert diff == 0
    elif transform == "noise":
        assert 0 < np.std(syn.images[i] - src) < 0.08
    else:
        assert diff > 0
    if transform == "flip":
        assert any(np.array_equal(syn.images[i], np.flip(src, ax)) for ax in ((-1,), (-2,), (-1, -2)))
    # the non-copies are reference slices, never training slices
    for j in np.flatnonzero(~info["is_copy"])[:5]:
        assert any(np.array_equal(syn.images[j], r) for r in ref.images)
    assert (syn.images >= -1).all() and (syn.images <= 1).all() and syn.masks.dtype == np.uint8
    assert np.array_equal(g.sample(n=40, seed=1).images, syn.images)  # same seed -> same samples


def test_reference_rules():
    train = _ds(4, "t", 0)
    with pytest.raises(UsageError, match="reference"):
        CopycatGenerator(rate=0.5).fit(train, seed=0)
    with pytest.raises(DataError, match="shares"):
        HoldoutGenerator().fit(train, seed=0, reference=train)
    with pytest.raises(UsageError, match="rate"):
        CopycatGenerator(rate=2.0).fit(train, seed=0)
    with pytest.raises(UsageError, match="transforms"):
        CopycatGenerator(transforms="warp").fit(train, seed=0)
    CopycatGenerator(rate=1.0).fit(train, seed=0)  # rate 1 needs no reference


def test_holdout_replays_reference_and_conditions_on_masks(tmp_path):
    train, ref = _ds(4, "t", 0), _ds(4, "r", 1)
    from cmraudit.data.dataset import write_dataset

    write_dataset(ref, tmp_path / "ref")
    g = HoldoutGenerator(source=str(tmp_path / "ref")).fit(train, seed=0)
    syn = g.sample(n=20, seed=0)
    assert all(any(np.array_equal(s, r) for r in ref.images) for s in syn.images)
    cond = g.sample(masks=ref.masks[:3], seed=0)
    assert np.array_equal(cond.masks, ref.masks[:3]) and np.array_equal(cond.images, ref.images[:3])


def test_save_load_roundtrip(tmp_path):
    train, ref = _ds(3, "t", 0), _ds(3, "r", 1)
    from cmraudit.generators.checkpoint import load_generator

    for g in (CopycatGenerator(rate=0.5, transforms=("flip", "noise")).fit(train, seed=0, reference=ref),
              HoldoutGenerator().fit(train, seed=0, reference=ref), NoiseGenerator().fit(train, seed=0)):
        g.save(tmp_path / g.name)
        h = type(g).load(tmp_path / g.name)
        assert np.array_equal(h.sample(n=7, seed=3).images, g.sample(n=7, seed=3).images)
        assert type(load_generator(tmp_path / g.name)) is type(g)


def test_noise_generator():
    train = _ds(2, "t", 0, size=32)
    syn = NoiseGenerator().fit(train, seed=0).sample(n=5, seed=0)
    assert syn.shape == (32, 32) and set(np.unique(syn.masks)) <= {0, 1, 2, 3} and (syn.masks == 3).any()
