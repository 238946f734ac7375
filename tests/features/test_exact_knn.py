"""exact_knn: the certified pruned search returns IndexFlatL2's neighbours (ties aside) on structured, adversarial
and degenerate data, never loses a true neighbour however weak its bound, and rejects bad input by name."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from cmraudit.data.phantom import PhantomConfig, make_phantom
from cmraudit.errors import UsageError
from cmraudit.features.neighbours import KnnStats, exact_knn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _truth(q, b, k):
    """float64 brute force: distances [Q, k] and the full distance matrix (for tie checks)."""
    q64, b64 = q.astype(np.float64), b.astype(np.float64)
    d = (q64**2).sum(1)[:, None] + (b64**2).sum(1)[None, :] - 2 * q64 @ b64.T
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), d


def _assert_exact(D, I, q, b, k, rtol=1e-5):
    """Every returned row is a true k-NN set: its exact distances equal the true k smallest, up to float ties."""
    dk, full = _truth(q, b, k)
    mine = np.take_along_axis(full, I, 1)  # float64 distances of the returned indices
    scale = np.maximum(dk[:, -1:], 1e-12)
    assert np.all(np.abs(mine - dk) <= rtol * scale + 1e-9), "a returned neighbour is not among the true k nearest"
    assert np.all(np.abs(D - mine) <= 1e-4 * scale + 1e-6), "returned distances are not the squared L2 distances"
    assert np.all(np.diff(D, axis=1) >= 0), "distances must ascend"
    assert all(len(set(r)) == k for r in I), "an index is repeated"


def _agree_with_faiss(D, I, q, b, k):
    index = faiss.IndexFlatL2(q.shape[1])
    index.add(b)
    Df, If = index.search(q, k)
    differ = (I != If).any(1)
    # where FAISS orders differently, it is a float tie: same distances to FAISS's own rounding
    np.testing.assert_allclose(D[differ], Df[differ], rtol=1e-4, atol=1e-3)
    return differ.mean()


@pytest.fixture(scope="module")
def phantom_vectors():
    ds = make_phantom(PhantomConfig(subjects=130, slices=8, size=32), seed=3)
    x = ds.images.reshape(len(ds.images), -1).astype(np.float32)
    return np.ascontiguousarray(x[:1600]), np.ascontiguousarray(x[1600:2080])  # base, queries (other subjects)


@pytest.mark.parametrize("k", [1, 2, 50])
def test_pruned_equals_brute_force_on_phantom_pixels(phantom_vectors, k, monkeypatch, stage_a):
    from cmraudit.features import pruned_knn

    monkeypatch.setattr(pruned_knn, "MAX_SHARE", 1.0)  # a 1600-row base: the probe may judge k = 50 not worth it
    base, query = phantom_vectors
    st = KnnStats()
    D, I = exact_knn(query, base, k, method="pruned", rank=128 if k < 50 else 384, stats=st)
    assert st.method == "pruned" and st.faiss_queries < len(query)
    assert st.candidates_per_query < len(base) / 2  # it pruned: most base rows never got an exact distance
    _assert_exact(D, I, query, base, k)
    assert _agree_with_faiss(D, I, query, base, k) < 0.05


def test_a_weak_bound_costs_work_never_neighbours(phantom_vectors):
    """rank 2: the projection keeps almost nothing, so stage B sees most of the base (or the probe hands over to
    IndexFlatL2), and the result stays exact."""
    base, query = phantom_vectors
    st = KnnStats()
    D, I = exact_knn(query[:200], base, 3, method="pruned", rank=2, stats=st)
    assert st.int8_share > 0.3 or st.faiss_queries > 0
    _assert_exact(D, I, query[:200], base, 3)


def test_coarse_int8_codes_stay_exact(stage_a):
    """Rows with one huge coordinate: their int8 step is coarse, so stage B's error term is large for them. The
    bound must widen accordingly, never drop a true neighbour (a missing error term fails here)."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((6, 384)).astype(np.float32)
    base = (rng.standard_normal((1200, 6)) @ w + 0.05 * rng.standard_normal((1200, 384))).astype(np.float32)
    query = (rng.standard_normal((300, 6)) @ w + 0.05 * rng.standard_normal((300, 384))).astype(np.float32)
    base[::7, 5] += 400.0  # a seventh of the base and of the queries: coarse codes
    query[::7, 5] += 400.0
    for k in (1, 4):
        st = KnnStats()
        D, I = exact_knn(query, base, k, method="pruned", rank=16, block=16, stats=st)
        assert st.method == "pruned" and st.faiss_queries == 0
        _assert_exact(D, I, query, base, k)


@pytest.fixture(params=["bf16", "fp32"])
def stage_a(request, monkeypatch):
    """Stage A in bfloat16 (where the CPU has it natively; forced here) and in float32."""
    from cmraudit.features import pruned_knn

    monkeypatch.setattr(pruned_knn, "_BF16", [request.param == "bf16"])
    return request.param


def test_large_projected_coordinates_stay_exact(stage_a, monkeypatch):
    """A coordinate of ≈ ±500 along one direction, neighbours ≈ 6 apart (squared): bfloat16 rounds the projections
    by up to 1 and stage A's products by hundreds, and rounds its thresholds in steps of thousands. Every rounding
    must widen the bound, never drop a neighbour. (Stage A's input-rounding term itself is pinned by the coarse-code
    and odd-size tests: dropping it fails both in bfloat16.)"""
    from cmraudit.features import pruned_knn

    monkeypatch.setattr(pruned_knn, "MAX_SHARE", 1.0)
    rng = np.random.default_rng(7)
    w = np.linalg.qr(rng.standard_normal((96, 4)))[0].T.astype(np.float32)  # 4 orthonormal directions

    def rows(n):
        t = rng.uniform(0, 1000, (n, 1))
        return (np.hstack([t, rng.standard_normal((n, 3))]) @ w).astype(np.float32)

    base, query = rows(3000), rows(600)
    for k in (1, 5):
        st = KnnStats()
        D, I = exact_knn(query, base, k, method="pruned", rank=8, stats=st)
        assert st.method == "pruned" and st.faiss_queries == 0
        _assert_exact(D, I, query, base, k)


def _gaussian(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1500, 256)).astype(np.float32), rng.standard_normal((400, 256)).astype(np.float32)


def test_gaussian_vectors_are_left_to_faiss_before_projecting():
    """Random Gaussian vectors: distances concentrate, nothing can be pruned; the held-out variance check sees it."""
    base, query = _gaussian()
    st = KnnStats()
    D, I = exact_knn(query, base, 5, method="pruned", rank=64, stats=st)
    assert st.method == "faiss" and "held-out variance" in st.reason and st.extra["energy"] < 0.5
    _assert_exact(D, I, query, base, 5)


def test_the_probe_hands_over_to_faiss_when_candidates_explode(monkeypatch):
    from cmraudit.features import pruned_knn

    monkeypatch.setattr(pruned_knn, "MIN_ENERGY", 0.0)  # skip the variance check: the probe must catch it
    base, query = _gaussian(1)
    st = KnnStats()
    D, I = exact_knn(query, base, 5, method="pruned", rank=64, stats=st)
    assert st.method == "faiss" and "probe" in st.extra
    assert st.faiss_queries > len(query) // 2  # all but the first group
    _assert_exact(D, I, query, base, 5)


def test_low_rank_data_is_pruned_to_a_few_candidates():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 512)).astype(np.float32)
    base = (rng.standard_normal((2000, 8)) @ w).astype(np.float32)
    query = (rng.standard_normal((300, 8)) @ w).astype(np.float32)
    st = KnnStats()
    D, I = exact_knn(query, base, 4, method="pruned", rank=16, stats=st)
    assert st.method == "pruned" and st.faiss_queries == 0
    assert st.candidates_per_query < 40 and st.int8_share < 0.2  # the rank-8 data is all in the projection
    _assert_exact(D, I, query, base, 4)


@pytest.mark.parametrize("n_base, n_query, k, block", [(1237, 301, 3, 64), (1, 5, 1, 64), (999, 130, 1, 1)])
def test_odd_sizes_stay_exact(n_base, n_query, k, block, stage_a):
    """A base size the strided upper-bound groups do not divide, a one-row base, one-query groups."""
    rng = np.random.default_rng(n_base)
    w = rng.standard_normal((5, 64)).astype(np.float32)
    base = (rng.standard_normal((n_base, 5)) @ w + 0.05 * rng.standard_normal((n_base, 64))).astype(np.float32)
    query = (rng.standard_normal((n_query, 5)) @ w + 0.05 * rng.standard_normal((n_query, 64))).astype(np.float32)
    st = KnnStats()
    D, I = exact_knn(query, base, k, method="pruned", rank=8, block=block, stats=st)
    assert st.method == "pruned"
    _assert_exact(D, I, query, base, k)


def test_no_queries():
    D, I = exact_knn(np.zeros((0, 16), np.float32), np.ones((40, 16), np.float32), 3, method="pruned")
    assert D.shape == (0, 3) and I.shape == (0, 3) and D.dtype == np.float32 and I.dtype == np.int64


def test_duplicates_and_exact_copies_in_the_base(stage_a):
    """Copies (distance 0) and duplicated base rows: ties, yet each returned set is a true k-NN set. Stage A's
    rounding makes its bound slightly negative for a copy, and its int16 keys must still order it first (without
    the clamp to zero, a negative key minus a threshold overflows int16 and the copies were dropped). Copies share
    strided groups, so most reach the exact stage through the bounds, not through the upper-bound rows."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 384)).astype(np.float32)
    rows = (rng.standard_normal((125, 6)) @ w + 0.05 * rng.standard_normal((125, 384))).astype(np.float32)
    base = np.ascontiguousarray(np.tile(rows, (8, 1)))  # every row 8 times, 125 rows apart
    query = np.ascontiguousarray(rows[::3] + 0)  # exact copies of base rows
    for k in (8, 12):
        st = KnnStats()
        D, I = exact_knn(query, base, k, method="pruned", rank=16, stats=st)
        assert st.method == "pruned" and st.faiss_queries == 0
        _assert_exact(D, I, query, base, k)
        assert np.all(D[:, :8] <= 1e-4)  # the copy and its 7 duplicates
        assert np.all(np.sort(I[:, :8] % 125, axis=1) == np.arange(0, 125, 3)[:, None])


def test_rows_equal_to_the_mean_stay_exact(stage_a, monkeypatch):
    """Centred rows that are all zero (rows equal to the base's mean, in the base and among the queries) have no int8
    scale of their own; the scale floor keeps stage B's threshold arithmetic (1 / s) finite, and the search exact."""
    from cmraudit.features import pruned_knn

    monkeypatch.setattr(pruned_knn, "MAX_SHARE", 1.0)
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 200)).astype(np.float32)
    half = (rng.standard_normal((500, 6)) @ w + 0.1 * rng.standard_normal((500, 200))).astype(np.float32)
    base = np.vstack([half, -half, np.zeros((20, 200), np.float32)])  # mean exactly 0: 20 all-zero centred rows
    query = np.vstack([np.zeros((30, 200), np.float32), half[:100] * 0.9, -half[100:200] + 1e-3]).astype(np.float32)
    for k in (1, 25):
        st = KnnStats()
        D, I = exact_knn(query, base, k, method="pruned", rank=16, stats=st)
        assert st.method == "pruned" and st.faiss_queries == 0
        _assert_exact(D, I, query, base, k)


def test_flat_and_small_auto_are_indexflatl2(phantom_vectors):
    """The FAISS path is IndexFlatL2, on rows centred on the base's mean where that mean holds over half the rows'
    energy (phantom pixels: a background near −1) and on the raw rows elsewhere (random vectors), bit for bit; so it
    agrees with IndexFlatL2 on the raw rows up to float ties."""
    base, query = phantom_vectors
    mu = base.mean(0)
    assert mu @ mu > 0.5 * (base * base).sum(1).mean()
    st = KnnStats()
    D, I = exact_knn(query, base, 2, stats=st)  # 480 × 1600 pairs: too small to prune
    assert st.method == "faiss" and "small problem" in st.reason
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base - mu)
    Df, If = index.search(query - mu, 2)
    assert np.array_equal(I, If) and np.array_equal(D, Df)
    D2, I2 = exact_knn(query, base, 2, method="flat")
    assert np.array_equal(I2, If)
    assert _agree_with_faiss(D, I, query, base, 2) < 0.05
    b, q = _gaussian(1)
    index = faiss.IndexFlatL2(b.shape[1])
    index.add(b)
    assert all(np.array_equal(x, y) for x, y in zip(exact_knn(q, b, 3, method="flat"), index.search(q, 3)))


def test_the_result_does_not_depend_on_the_block_size(phantom_vectors):
    base, query = phantom_vectors
    a = exact_knn(query, base, 2, method="pruned", rank=96, block=37)
    b = exact_knn(query, base, 2, method="pruned", rank=96, block=512)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros(5, np.float32), np.zeros((5, 5), np.float32), 1), "query must be a 2-D array"),
        ((np.zeros((3, 4), np.float32), np.zeros((5, 5), np.float32), 1), "query has 4 columns but base has 5"),
        ((np.zeros((3, 5), np.float32), np.zeros((5, 5), np.float32), 0), "k must be a whole number in [1, 5]"),
        ((np.zeros((3, 5), np.float32), np.zeros((5, 5), np.float32), 6), "k must be a whole number in [1, 5]"),
        ((np.full((3, 5), np.nan, np.float32), np.zeros((5, 5), np.float32), 1), "query contains NaN"),
    ],
)
def test_bad_input_is_named(args, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        exact_knn(*args)


def test_bad_method_and_rank_are_named():
    x = np.zeros((4, 8), np.float32)
    with pytest.raises(UsageError, match="method must be one of"):
        exact_knn(x, x, 1, method="hnsw")
    with pytest.raises(UsageError, match="rank must be in"):
        exact_knn(x, x, 1, method="pruned", rank=9)


@pytest.mark.parametrize("method", ["flat", "auto", "pruned"])
def test_a_large_common_offset_stays_exact(method, monkeypatch):
    """Rows 10⁴× further from the origin than from each other: IndexFlatL2's ‖x‖² + ‖y‖² − 2⟨x, y⟩ on the raw rows
    loses every digit of the distances (distinct rows at distance 0); every path of exact_knn centres first, so the
    true neighbours come back, with their distances."""
    from cmraudit.features import pruned_knn

    monkeypatch.setattr(pruned_knn, "MAX_SHARE", 1.0)
    rng = np.random.default_rng(11)
    w = rng.standard_normal((5, 1024))

    def rows(n):  # IndexFlatL2 on these raw rows returned distance 0 for every query (FAISS 1.x, measured)
        return (rng.standard_normal((n, 5)) @ w + rng.standard_normal((n, 1024)) + 1e4).astype(np.float32)

    base, query = rows(1500), rows(200)
    D, I = exact_knn(query, base, 3, method=method, rank=32)
    mu = base.astype(np.float64).mean(0)
    _assert_exact(D, I, query - mu, base - mu, 3)  # the float64 truth on centred rows (no cancellation)


@pytest.mark.parametrize("stage_a", ["bf16", "fp32"])
def test_an_offset_a_million_times_the_spread_stays_exact(stage_a, monkeypatch):
    """Stage A projects the centred rows: projecting raw rows offset by 10⁵ and subtracting the mean's projection
    (session 17's code) erred by twice the projected values themselves, and pruned about 5 % of the rows' true
    neighbours (session 18's review)."""
    from cmraudit.features import pruned_knn

    monkeypatch.setattr(pruned_knn, "_BF16", [stage_a == "bf16"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3500, 32)) @ (rng.standard_normal((32, 1024)) / np.sqrt(32))
    x = (0.1 * x + 0.001 * rng.standard_normal(x.shape) + 1e5).astype(np.float32)
    query, base = x[:500], x[500:]
    st = KnnStats()
    D, I = exact_knn(query, base, 5, method="pruned", stats=st)
    assert st.method == "pruned"
    mu = base.astype(np.float64).mean(0)
    _assert_exact(D, I, query - mu, base - mu, 5, rtol=1e-4)


def test_values_that_overflow_the_basis_go_to_faiss():
    """Rows near 2·10¹⁷: squared distances still fit float32, but the basis's Gram products overflow to NaN. The
    search must notice (NaN is not below the energy floor) and hand the rows to IndexFlatL2, not prune with a NaN
    basis."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, 32)) @ (rng.standard_normal((32, 1024)) / np.sqrt(32))
    x = ((x + 0.05 * rng.standard_normal(x.shape)) * 2e17).astype(np.float32)
    st = KnnStats()
    D, I = exact_knn(x[:50], x[50:], 5, method="pruned", stats=st)
    assert st.method == "faiss" and "overflowed" in st.reason
    _assert_exact(D, I, x[:50], x[50:], 5, rtol=1e-4)


def test_k_must_be_a_whole_number():
    x = np.zeros((4, 8), np.float32)
    with pytest.raises(UsageError, match="k must be a whole number"):
        exact_knn(x, x, 2.7)


def test_torch_tensors_and_non_real_input():
    """A torch tensor (bfloat16, requiring grad) is searched as its float32 values; complex or text input is named."""
    import torch

    rng = np.random.default_rng(2)
    b = torch.from_numpy(rng.standard_normal((40, 8)).astype(np.float32)).bfloat16().requires_grad_()
    q = torch.from_numpy(rng.standard_normal((5, 8)).astype(np.float32))
    D, I = exact_knn(q, b, 3)
    D2, I2 = exact_knn(q.numpy(), b.detach().float().numpy(), 3)
    np.testing.assert_array_equal(I, I2)
    np.testing.assert_array_equal(D, D2)
    with pytest.raises(UsageError, match="base must hold real numbers"):
        exact_knn(q.numpy(), np.zeros((4, 8), np.complex64), 1)
    with pytest.raises(UsageError, match="query must hold real numbers"):
        exact_knn(np.full((2, 8), "a"), np.zeros((4, 8), np.float32), 1)
