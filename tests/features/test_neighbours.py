"""FAISS search equals numpy brute force (indices and distances), batched, l2 and cosine."""
from __future__ import annotations

import numpy as np
import pytest

from cmraudit.errors import UsageError
from cmraudit.features.neighbours import knn


def _brute(q, b, k, metric):
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        d = 1 - q @ b.T
    else:
        d = np.sqrt(((q[:, None, :].astype(np.float64) - b[None].astype(np.float64)) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_equals_brute_force(metric):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(300, 48)).astype(np.float32)
    b = rng.normal(size=(500, 48)).astype(np.float32)
    nb = knn(q, b, k=7, metric=metric, batch_size=64)  # several batches
    d, i = _brute(q, b, 7, metric)
    assert np.array_equal(nb.indices, i)
    np.testing.assert_allclose(nb.distances, d, rtol=1e-4, atol=1e-4)


def test_exclude_self_and_k_check():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    nb = knn(x, x, k=3, exclude_self=True)
    assert not (nb.indices == np.arange(50)[:, None]).any()
    d, i = _brute(x, x, 4, "l2")
    assert np.array_equal(nb.indices, i[:, 1:])
    with pytest.raises(UsageError, match="k=60"):
        knn(x, x, k=60)


def test_approximate_prefilter_reranks_exactly():
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(20, 16)) * 5
    b = (centers[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    q = (centers[rng.integers(0, 20, 200)] + rng.normal(size=(200, 16))).astype(np.float32)
    nb = knn(q, b, k=5, approx_threshold=1000, prefilter_k=200)  # forces the IVF pre-filter path
    d, i = _brute(q, b, 5, "l2")
    # the distances returned are exact for the rows returned ...
    np.testing.assert_allclose(nb.distances, np.linalg.norm(q[:, None] - b[nb.indices], axis=-1), rtol=1e-4, atol=1e-4)
    # ... and with a generous pre-filter the neighbours are (nearly) those of brute force
    assert (nb.indices[:, 0] == i[:, 0]).mean() >= 0.95
