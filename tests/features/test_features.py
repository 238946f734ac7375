"""Feature spaces: pixel downsampling, the learned domain encoder (determinism, flip invariance, save/load), the
shared API."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cmraudit.errors import UsageError
from cmraudit.features import DomainFeatures, extract_features, fit_features, make_features
from cmraudit.features.pixel import resize_images
from cmraudit.features.polar import PolarFeatures


def _imgs(n=40, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        cy, cx, r = rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(3, 8)
        img = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, 0.8, -0.6) + rng.normal(0, 0.05, (size, size))
        out.append(img)
    return np.clip(np.array(out, np.float32), -1, 1)


def test_pixel_block_mean():
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    y = resize_images(x, 2)
    assert y.shape == (2, 2, 2)
    assert y[0, 0, 0] == pytest.approx(np.mean([0, 1, 4, 5]))
    f = fit_features("pixel", seed=0, size=2).transform_images(x)
    assert f.shape == (2, 4)
    assert fit_features("pixel", seed=0, size=None).transform_images(x).shape == (2, 16)


@pytest.mark.parametrize("fy,fx", [(1, 1), (2, 2), (3, 2), (2, 4), (4, 4), (8, 8)])
def test_block_mean_is_numpys_mean_bit_for_bit(fy, fx):
    from cmraudit.features.pixel import block_mean

    y = np.random.default_rng(fy * 10 + fx).standard_normal((5, 6, fy, 7, fx)).astype(np.float32) * 3
    assert np.array_equal(block_mean(y), y.mean(axis=(2, 4)))


def test_domain_embedding_does_not_depend_on_the_number_of_workers(monkeypatch):
    import cmraudit.cpu

    pool = _imgs(n=70)
    fx = fit_features("domain", pool=pool, seed=3, steps=5)
    monkeypatch.setattr(cmraudit.cpu, "available_cpus", lambda: 1)
    one = fx.transform_images(pool, batch=16)
    monkeypatch.setattr(cmraudit.cpu, "available_cpus", lambda: 3)
    three = fx.transform_images(pool, batch=16)  # 5 batches on 3 workers
    assert np.array_equal(one, three)


def test_domain_encoder_deterministic_and_flip_invariant():
    pool = _imgs()
    a = fit_features("domain", pool=pool, seed=3, steps=15)
    b = fit_features("domain", pool=pool, seed=3, steps=15)
    c = fit_features("domain", pool=pool, seed=4, steps=15)
    za, zb, zc = (m.transform_images(pool) for m in (a, b, c))
    assert np.array_equal(za, zb)  # same seed -> same embedding
    assert not np.allclose(za, zc)  # a different seed changes it
    np.testing.assert_allclose(np.linalg.norm(za, axis=1), 1.0, atol=1e-5)
    for flip in (pool[:, :, ::-1], pool[:, ::-1, :], pool[:, ::-1, ::-1]):
        np.testing.assert_allclose(a.transform_images(np.ascontiguousarray(flip)), za, atol=1e-5)


def test_user_encoder_state_dict_and_torchscript(tmp_path):
    pool = _imgs()
    fx = fit_features("domain", pool=pool, seed=0, steps=5)
    fx.save(tmp_path / "enc")
    user = fit_features("domain", seed=0, encoder=tmp_path / "enc")  # no pool needed
    np.testing.assert_allclose(user.transform_images(pool), fx.transform_images(pool), atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation notice
        scripted = torch.jit.script(fx.model_)
    scripted.save(str(tmp_path / "enc.pt"))
    ts = fit_features("domain", seed=0, encoder=tmp_path / "enc.pt")
    np.testing.assert_allclose(ts.transform_images(pool), fx.transform_images(pool), atol=1e-5)


def test_extract_features_api_and_errors():
    pool = _imgs()
    a, b = extract_features("pixel", pool[:10], pool[10:], seed=0, size=16)
    assert a.shape == (10, 256) and b.shape == (30, 256)
    with pytest.raises(UsageError, match="needs pool"):
        extract_features("domain", pool, seed=0)
    with pytest.raises(UsageError, match="unknown feature space"):
        make_features("inception")
    assert isinstance(make_features("domain"), DomainFeatures)


def test_polar_invariant_to_flips_and_right_angles():
    x = _imgs(10)
    pf = PolarFeatures().fit()
    f = pf.transform_images(x)
    np.testing.assert_allclose(pf.transform_images(np.ascontiguousarray(x[:, :, ::-1])), f, atol=0.02)
    np.testing.assert_allclose(pf.transform_images(np.ascontiguousarray(np.rot90(x, 1, axes=(1, 2)))), f, atol=0.02)


@pytest.mark.parametrize("size", [1, 2, 16, 32, 64])
def test_mask_features_are_block_means_of_the_one_hot(size):
    from cmraudit.features.masks import mask_features

    m = np.random.default_rng(size).integers(0, 4, (7, 64, 64)).astype(np.uint8)
    oh = np.stack([(m == c) for c in (1, 2, 3)], 1).astype(np.float32)
    f = 64 // size
    want = oh.reshape(7, 3, size, f, size, f).mean(axis=(3, 5)).reshape(7, -1)
    assert np.array_equal(mask_features(m, size=size), want)
