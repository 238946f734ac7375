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


def test_knn_and_reverse_equals_two_searches():
    from cmraudit.features.neighbours import knn, knn_and_reverse

    rng = np.random.default_rng(7)
    q, b = rng.standard_normal((700, 300)).astype(np.float32), rng.standard_normal((500, 300)).astype(np.float32)
    for k in (1, 5):
        fwd, rev = knn_and_reverse(q, b, k=k, block=256)  # several query blocks: the running column minimum
        want_f, want_r = knn(q, b, k=k), knn(b, q, k=1)
        assert np.array_equal(fwd.indices, want_f.indices) and np.array_equal(rev.indices, want_r.indices)
        np.testing.assert_allclose(fwd.distances, want_f.distances, rtol=1e-5)
        np.testing.assert_allclose(rev.distances, want_r.distances, rtol=1e-5)


def test_knn_and_reverse_by_two_pruned_searches_equals_the_one_pass(monkeypatch):
    """Where the pruned exact search applies (here: MIN_PAIRS lowered to reach it at test size), knn_and_reverse
    runs it in both directions; same neighbours as its GEMM pass (ties aside), exact copies at distance 0."""
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.features import neighbours, pruned_knn

    x = make_phantom(PhantomConfig(subjects=260, slices=8, size=32), seed=5).images.reshape(-1, 1024)
    b, q = np.ascontiguousarray(x[:1200], np.float32), np.ascontiguousarray(x[1200:2000], np.float32)
    q[:40] = b[:40]  # exact copies
    monkeypatch.setenv("CMRAUDIT_EXACT_KNN_INT8", "1")
    monkeypatch.setattr(pruned_knn, "MIN_PAIRS", 0)
    assert neighbours.prunes(q, b, 2) and neighbours.prunes(b, q, 1)
    for k in (1, 3):
        fwd, rev = neighbours.knn_and_reverse(q, b, k=k)
        with monkeypatch.context() as m:
            m.setattr(neighbours, "prunes", lambda *a, **kw: False)
            want_f, want_r = neighbours.knn_and_reverse(q, b, k=k)
        assert (fwd.indices == want_f.indices).all(1).mean() > 0.99
        assert (rev.indices == want_r.indices).mean() > 0.99
        np.testing.assert_allclose(fwd.distances, want_f.distances, atol=2e-2)  # the GEMM pass's cancellation
        np.testing.assert_allclose(rev.distances, want_r.distances, atol=2e-2)
        assert np.all(fwd.distances[:40, 0] == 0) and np.array_equal(fwd.indices[:40, 0], np.arange(40))


def test_knn_takes_the_pruned_search_where_it_applies(monkeypatch):
    """knn (L2, a base, no exclude_self) answers by the certified pruned search where prunes() says it applies: the
    same neighbours as FAISS (ties aside); exclude_self, the cosine metric and a prebuilt index stay on FAISS."""
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.features import neighbours, pruned_knn

    x = make_phantom(PhantomConfig(subjects=260, slices=8, size=32), seed=6).images.reshape(-1, 1024)
    b, q = np.ascontiguousarray(x[:1200], np.float32), np.ascontiguousarray(x[1200:1800], np.float32)
    monkeypatch.setenv("CMRAUDIT_EXACT_KNN_INT8", "1")
    monkeypatch.setattr(pruned_knn, "MIN_PAIRS", 0)
    calls = []
    real = neighbours.pruned_neighbours
    monkeypatch.setattr(neighbours, "pruned_neighbours", lambda *a: calls.append(a[2]) or real(*a))
    got = knn(q, b, k=4)
    assert calls == [4]
    want = knn(q, index=neighbours.build_index(b), k=4)  # FAISS
    assert (got.indices == want.indices).all(1).mean() > 0.99
    np.testing.assert_allclose(got.distances, want.distances, atol=1e-3)
    knn(b, b, k=2, exclude_self=True)
    knn(q, b, k=2, metric="cosine")
    assert calls == [4]


def test_gan_leaks_with_the_copy_searchs_reverse_distances_equals_its_own_search():
    from cmraudit.features.neighbours import knn_and_reverse
    from cmraudit.privacy.mia.blackbox import gan_leaks_scores

    rng = np.random.default_rng(8)
    t, h, s = (rng.standard_normal((n, 260)).astype(np.float32) for n in (120, 100, 90))
    fold_t, fold_h = np.arange(120) % 2, np.arange(100) % 2
    near = {"train": knn_and_reverse(s, t, k=3)[1].distances[:, 0],
            "holdout": knn_and_reverse(s, h, k=1)[1].distances[:, 0]}
    a = gan_leaks_scores(train_feats=t, holdout_feats=h, synthetic_feats=s, fold_h=fold_h, fold_t=fold_t)
    b = gan_leaks_scores(train_feats=t, holdout_feats=h, synthetic_feats=s, fold_h=fold_h, fold_t=fold_t,
                         nearest_synthetic=near)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-4)

    def nearest(x, y):  # brute force
        return np.sqrt(((x[:, None, :].astype(np.float64) - y[None]) ** 2).sum(-1)).min(1)

    want_t = np.empty(120)
    want_h = np.empty(100)
    for f in (0, 1):
        ref = h[fold_h == 1 - f]
        want_t[fold_t == f] = nearest(t[fold_t == f], ref) - nearest(t[fold_t == f], s)
        want_h[fold_h == f] = nearest(h[fold_h == f], ref) - nearest(h[fold_h == f], s)
    np.testing.assert_allclose(b[0], want_t, atol=1e-4)
    np.testing.assert_allclose(b[1], want_h, atol=1e-4)  # the holdout halves from one two-way pass


def test_a_large_common_offset_keeps_knn_and_the_one_pass_exact():
    """Rows 10⁴ from the origin and ≈ 45 apart (1024-d): on the raw rows the GEMM form ‖q‖² + ‖b‖² − 2 q·b
    (IndexFlatL2, the one-pass search) loses the distances' digits; knn and knn_and_reverse centre on the base's
    dominant mean first, so the neighbours and distances are those of brute force (to the GEMM form's rounding on
    the centred rows). A prebuilt index is searched as built; a mean that does not dominate is not used."""
    from cmraudit.features.neighbours import build_index, knn_and_reverse
    from cmraudit.features.pruned_knn import dominant_mean

    rng = np.random.default_rng(12)
    b = (rng.standard_normal((400, 1024)) + 1e4).astype(np.float32)
    q = (rng.standard_normal((150, 1024)) + 1e4).astype(np.float32)
    q[:20] = b[50:70]  # exact copies: distance 0
    d, i = _brute(q, b, 3, "l2")
    raw = knn(q, k=3, index=build_index(b))  # a prebuilt index is searched as built: the cancellation shows
    assert np.abs(raw.distances - d).max() > 1
    nb = knn(q, b, k=3)
    fwd, rev = knn_and_reverse(q, b, k=3)
    for got in (nb, fwd):
        assert (got.indices[:, 0] == i[:, 0]).mean() >= 0.99  # ties aside
        np.testing.assert_allclose(got.distances, d, atol=0.05)  # GEMM-form rounding of the centred rows
        assert got.distances[:20, 0].max() < 0.05
    dr, ir = _brute(b, q, 1, "l2")
    np.testing.assert_allclose(rev.distances, dr, atol=0.05)
    assert dominant_mean(b) is not None and dominant_mean(b - b.mean(0)) is None


def test_cosine_distance_of_an_exact_copy_is_zero_not_negative():
    """1 − ⟨x, y⟩ of normalised float32 rows rounds to −1e-7 for a copy (d1/d2 came out −119209)."""
    rng = np.random.default_rng(3)
    b = rng.standard_normal((200, 97)).astype(np.float32) * rng.uniform(0.1, 50, (200, 1)).astype(np.float32)
    nb = knn(b[:50].copy(), b, k=2, metric="cosine")
    assert (nb.distances >= 0).all() and (nb.distances <= 2).all()
    assert (nb.indices[:, 0] == np.arange(50)).all() and (nb.distances[:, 0] < 1e-6).all()
