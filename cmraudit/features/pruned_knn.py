"""Exact k-NN that does less than the full float32 distance GEMM: two certified lower bounds prune, exact distances
decide.

:func:`exact_knn` returns what ``faiss.IndexFlatL2`` returns — squared L2 distances, ascending, with the indices
of the base rows — ties aside, but computes a float32 distance only for the few base rows no bound excludes
(the pieces are in :mod:`.knn_bounds`):

1. **Stage A, a projection bound.** An orthonormal basis ``V`` (d × m; m = min(4√d, d/4): 128 at 1024-d) of the
   base's principal subspace. For any x, y: ``‖Vᵀ(x − y)‖² ≤ ‖x − y‖²`` (Bessel), so projected distances are lower
   bounds whatever the basis quality; a poor basis costs work, never a neighbour. One GEMM (depth m + 2 or 3)
   computes every query × base pair's projected distance ``‖p_q‖² + ‖p_b‖² − 2⟨p_q, p_b⟩``: in bfloat16 where the CPU
   multiplies it natively (AVX512-BF16, AMX; 2× the float32 rate) and torch accumulates it in float32 (checked at
   the call's depth), else float32. The bfloat16 inputs' rounding is measured (``‖p − p̂‖`` per row) and widens the
   bound; the norms are rounded down (``‖p_q‖²`` as two bfloat16 terms) and the threshold up, and the output's own
   rounding is monotone and keeps signs, so it cannot move a pair across the threshold. Negative outputs
   (rounding) are set to zero, after which the bfloat16 values order as their int16 bit patterns: the selections
   below run on int16, which torch reduces 2–8× faster than bfloat16 (measured).
2. **An upper bound per query.** The smallest projected bounds point at likely neighbours (the best of each of
   the ``k + k/4`` best strided groups of ≈ 10 base rows); the k-th smallest of their exact distances, ``U``, is
   at least the true k-th neighbour distance. These distances join the final top k (not computed twice).
3. **Stage B, an int8 bound over query groups.** Queries are grouped by k-means on their leading projections
   (``block`` rows a group), so a group's queries share most candidates. The base rows stage A leaves to at least
   one query of a group (its union) get an int8 inner product with the group's queries (``torch._int_mm``: exact
   int32 sums, 4× the float32 rate with VNNI). With per-row codes ``x = s·q + e`` of the centred rows,
   ``|⟨x, y⟩ − s_x s_y ⟨q_x, q_y⟩| ≤ ‖h_x‖‖e_y‖ + ‖e_x‖‖h_y‖ + ‖e_x‖‖e_y‖`` (Cauchy–Schwarz on the measured norms,
   ``h = s·q``): a few units on squared distances of ≈ 100 for 1024-d phantom pixels. The test on each pair is
   a threshold on its int32 sum, the error terms per pair included: all thresholds of a group come from one
   K = 6 float32 GEMM of per-row factors (its own rounding bounded and subtracted).
4. **Exact decision.** Every true k-nearest row has both bounds ≤ its distance ≤ ``U``, so the rows whose stage-B
   bound is ≤ ``U`` hold them all; their exact distances (``faiss.pairwise_indexed_L2sqr``), with the upper
   bound's, decide, ties broken by index. The certificate holds by construction: no retry, no per-query fallback.
5. **No slower than FAISS where pruning cannot help.** If the basis holds under ``MIN_ENERGY`` of the variance of
   held-out base rows (random Gaussian vectors: 6 %), nothing is projected; if the first query group still needs
   int8 products with more than ``MAX_SHARE`` of the base, the rest goes to ``IndexFlatL2``.

Why hand-written: neither FAISS nor scikit-learn offers an exact search below the float32 GEMM's cost; FAISS's own
pieces (``IndexFlatL2``, k-means, ``pairwise_indexed_L2sqr``) do the exact parts.
``method="auto"`` prunes only where it measured faster (dimension ≥ ``MIN_DIM``, k ≤ ``MAX_AUTO_K``, int8 dot
products in the CPU); figures and the frontier are in docs/benchmarks.md.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np

from ..device import cpu_flags
from ..errors import UsageError
from .knn_bounds import (
    PrunedSearch, basis, bf16_round, chunks, dominant_mean, floor_scales, int8_code, query_groups,
)

MIN_PAIRS = 4_000_000  # below this many query × base pairs, IndexFlatL2 alone is faster
MIN_DIM = 512  # "auto" prunes from this dimension on
MAX_AUTO_K = 64  # "auto" prunes up to this k
METHODS = ("auto", "pruned", "flat")
MIN_ENERGY = 0.5  # below this share of held-out variance in the projection, stage A bounds too little to prune
MAX_SHARE = 0.5  # above this share of int8 products in the first group, pruning cannot pay: IndexFlatL2
PROBE = 64  # query rows in the first chunk, which decides whether pruning pays
CHUNK = 512  # query rows per stage-A GEMM (fewer when the base is large: ≤ 2**25 scores at a time)
SCALE_FLOOR = 1 / 16  # int8 scales ≥ this share of the largest (keeps stage B's threshold arithmetic finite)
MAX_DIM = 131_072  # int32 sums of int8 products cannot overflow below this dimension (127² · d < 2³¹)


@dataclass
class KnnStats:
    """How :func:`exact_knn` spent its work (for benchmarks and tests)."""

    method: str = "pruned"  # "pruned" | "faiss" (small problem, low dimension, no int8 dot products, or the probe)
    rank: int = 0
    candidates_per_query: float = 0.0  # exact float32 distances computed per pruned query
    int8_share: float = 0.0  # share of the pruned queries × base pairs that got an int8 inner product
    faiss_queries: int = 0  # queries answered by IndexFlatL2
    reason: str = ""
    extra: dict = field(default_factory=dict)


def _cpu_has_fast_int8() -> bool:
    """True when the CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8).

    ``CMRAUDIT_EXACT_KNN_INT8=0/1`` overrides the check (tests; CPUs whose flags Linux does not list).
    """
    env = os.environ.get("CMRAUDIT_EXACT_KNN_INT8")
    if env in {"0", "1"}:
        return env == "1"
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def _as_matrix(x, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "float"):  # a torch tensor (bfloat16, on a GPU, requiring grad)
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise UsageError(f"exact_knn: {name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 2:
        raise UsageError(f"exact_knn: {name} must be a 2-D array [n, d], got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.size and not (np.isfinite(a.min()) and np.isfinite(a.max())):  # NaN propagates; no temporary array
        raise UsageError(f"exact_knn: {name} contains NaN or infinite values")
    return a


class _Flat:
    """``IndexFlatL2`` over the base, built on first use and reused by every fallback of one call.

    Where the base's mean holds most of its rows' energy (``‖μ‖² > E‖x‖² / 2``), base and queries are centred on it
    first: L2 distances do not change, but IndexFlatL2's ``‖x‖² + ‖y‖² − 2⟨x, y⟩`` cancels catastrophically when a
    common offset dominates the spread (rows offset by 10⁴ and ≈ 50 apart came back at distance 0), and centring
    removes that offset. Elsewhere centring gains little and costs two copies, so the rows go in as they are."""

    def __init__(self, base: np.ndarray):
        self.base, self.index, self.threads = base, None, None  # threads: FAISS's own, while it is held at one
        self.mu = None

    def __call__(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if self.index is None:
            self.mu = dominant_mean(self.base)
            self.index = faiss.IndexFlatL2(self.base.shape[1])
            self.index.add(self.base if self.mu is None else self.base - self.mu)
        with _faiss_threads(self.threads):
            return self.index.search(np.ascontiguousarray(query if self.mu is None else query - self.mu), k)


@contextlib.contextmanager
def _faiss_threads(n: int | None):
    """FAISS's OpenMP threads set to ``n`` for the block (the calling thread's setting), then back to one."""
    if n is None:
        yield
        return
    import faiss

    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(1)


@contextlib.contextmanager
def _one_pool(flat: _Flat):
    """Keep FAISS's OpenMP pool from competing with torch's during the pruned search's many small FAISS calls.

    FAISS's wheel bundles its own OpenMP runtime. Imported after torch, FAISS binds to torch's runtime and the two
    share one pool: nothing to do. Imported first (the user's code, a script), it keeps its own, whose threads
    spin-wait after each FAISS call while torch's threads run: on 2 cores that made this search 1.7× slower. FAISS
    then runs on the calling thread alone here, except inside IndexFlatL2's own searches.
    """
    import faiss
    import torch

    threads, torch_threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(1)
    if torch.get_num_threads() != torch_threads:  # one runtime: that was torch's pool too
        faiss.omp_set_num_threads(threads)
        threads = None
    flat.threads = threads
    try:
        yield
    finally:
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        flat.threads = None


def _flat_reason(method: str, k: int, d: int, m: int, pairs: int) -> str:
    """Why this call goes to IndexFlatL2 without trying to prune ('' when it prunes)."""
    if method == "flat":
        return "method='flat'"
    if m >= d:
        return f"rank = {m} ≥ d = {d}: the projection bound is the distance itself, nothing to prune"
    if d > MAX_DIM:
        return f"dimension {d} > {MAX_DIM}: int32 sums of int8 products could overflow"
    if method == "pruned":
        return ""
    if pairs < MIN_PAIRS:
        return f"small problem ({pairs} pairs < {MIN_PAIRS})"
    if k > MAX_AUTO_K:
        return f"k = {k} > {MAX_AUTO_K}: exact distances for the candidates measured slower than IndexFlatL2"
    if d < MIN_DIM:
        return f"dimension {d} < {MIN_DIM}: pruning measured no faster than IndexFlatL2 there"
    if not _cpu_has_fast_int8():
        return "CPU without int8 dot products (AVX512-VNNI / AVX-VNNI / AMX)"
    return ""


def _default_rank(d: int) -> int:
    """Stage A's projection rank: min(4√d, d // 4), 128 at 1024-d and 256 at 4096-d (ranks 80–256 measured within
    the noise of each other at 1024-d with the bfloat16 stage A, 64–128 with the float32 one)."""
    return max(1, min(int(4 * d**0.5), d // 4))


def prunes(query, base, k: int, *, seed: int = 0) -> bool:
    """Whether ``exact_knn(query, base, k)`` ("auto") would take the pruned path: the static rules, then the
    projection's held-out variance (a rank-m basis of the base: ≈ 10 ms at 10k × 1024). Its probe can still hand
    over to IndexFlatL2. False where torch sees CUDA: the pruned search is a CPU method, and the callers' GPU paths
    (FAISS on the GPU, torch's GEMM pass) are faster there."""
    import torch

    query, base = _as_matrix(query, "query"), _as_matrix(base, "base")
    n_q, (n_b, d) = len(query), base.shape
    m = _default_rank(d)
    if torch.cuda.is_available() or n_q == 0 or not 1 <= k <= n_b or _flat_reason("auto", k, d, m, n_q * n_b):
        return False
    return query.shape[1] == d and basis(torch.from_numpy(base), m, seed)[2] >= MIN_ENERGY


def exact_knn(
    query,
    base,
    k: int,
    *,
    method: str = "auto",
    rank: int | None = None,
    block: int = 64,
    seed: int = 0,
    stats: KnnStats | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest base rows of each query row: ``(distances, indices)`` in FAISS's convention.

    ``distances`` [Q, k] float32 are squared L2, ascending; ``indices`` [Q, k] int64. Identical to
    ``faiss.IndexFlatL2(d).search(query, k)`` up to float ties; where IndexFlatL2 runs, it runs on rows centred on the
    base's mean if that mean dominates (the same distances, without its cancellation under a large common offset).
    ``method``: ``"flat"`` (IndexFlatL2), ``"pruned"`` (the certified pruned search wherever it can run) or
    ``"auto"`` (pruned only where it measured faster: ≥ ``MIN_DIM`` dimensions, k ≤ ``MAX_AUTO_K``, int8 dot
    products in the CPU, ≥ ``MIN_PAIRS`` pairs). ``"pruned"`` forced on a CPU without int8 dot products or native
    bfloat16 (AVX2 only) gives the same neighbours 4–9× slower than IndexFlatL2 (docs/benchmarks.md).
    ``rank`` is stage A's projection rank (default ``min(4√d, d // 4)``), ``block`` the queries per k-means group,
    ``seed`` the basis's subsample and sketch and the k-means: they change the time, never the neighbours. Pass a
    :class:`KnnStats` to learn which path ran and how much it computed.
    """
    if method not in METHODS:
        raise UsageError(f"exact_knn: method must be one of {METHODS}, got {method!r}")
    xq, xb = _as_matrix(query, "query"), _as_matrix(base, "base")
    if xq.shape[1] != xb.shape[1]:
        raise UsageError(f"exact_knn: query has {xq.shape[1]} columns but base has {xb.shape[1]}")
    if isinstance(k, bool) or not float(k).is_integer() or not 1 <= int(k) <= len(xb):
        raise UsageError(f"exact_knn: k must be a whole number in [1, {len(xb)}] (the base's size), got {k!r}")
    k = int(k)
    if int(block) < 1:
        raise UsageError(f"exact_knn: block must be ≥ 1, got {block}")
    st = stats if stats is not None else KnnStats()
    d = xb.shape[1]
    m = int(rank) if rank else _default_rank(d)
    if not 1 <= m <= d:
        raise UsageError(f"exact_knn: rank must be in [1, {d}], got {m}")
    st.rank = m
    if not len(xq):
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    flat = _Flat(xb)
    why = _flat_reason(method, k, d, m, len(xq) * len(xb))
    if why:
        st.method, st.reason, st.faiss_queries = "faiss", why, len(xq)
        return flat(xq, k)
    with _one_pool(flat):
        return _pruned(xq, xb, k, m, int(block), seed, st, flat)


def _pruned(xq: np.ndarray, xb: np.ndarray, k: int, m: int, block: int, seed: int, st: KnnStats, flat: _Flat):
    import torch

    tb, tq = torch.from_numpy(xb), torch.from_numpy(xq)
    mu, v, energy = basis(tb, m, seed)
    st.extra["energy"] = energy
    if not energy >= MIN_ENERGY:  # e.g. random Gaussian vectors: the projection cannot bound much; NaN: overflow
        st.method, st.faiss_queries = "faiss", len(xq)
        st.reason = (f"the rank-{m} subspace holds {energy:.0%} of held-out variance (< {MIN_ENERGY:.0%}): no pruning"
                     if energy == energy else "the basis overflowed float32 (values near 1e17 or beyond): no pruning")
        return flat(xq, k)
    pq, search = _prepare(xq, xb, k, tq, tb, mu, v)
    chunk_rows = max(16, min(CHUNK, 2**25 // len(xb)))
    D = np.empty((len(xq), k), np.float32)
    I = np.empty((len(xq), k), np.int64)
    done, exact, share = [], 0, 0
    for i, chunk in enumerate(chunks(query_groups(pq.numpy(), block, chunk_rows, seed), PROBE, chunk_rows)):
        if i == 1 and share > MAX_SHARE * len(done[0]) * len(xb):
            st.extra["probe"] = (f"the first {len(done[0])} queries needed int8 products with "
                                 f"{share / (len(done[0]) * len(xb)):.0%} of the base (> {MAX_SHARE:.0%})")
            break
        rows = np.concatenate(chunk)
        e, s = search.chunk(chunk, rows, D, I)
        exact, share = exact + e, share + s
        done.append(rows)
    done = np.concatenate(done)
    if len(done) < len(xq):
        rest = np.setdiff1d(np.arange(len(xq)), done)
        D[rest], I[rest] = flat(xq[rest], k)
        st.faiss_queries += len(rest)
        st.method, st.reason = "faiss", st.extra["probe"] + "; the rest went to IndexFlatL2"
    st.candidates_per_query = exact / len(done)
    st.int8_share = share / (len(done) * len(xb))
    return D, I


def _prepare(xq, xb, k, tq, tb, mu, v):
    """Stage A's operands (bfloat16 where the CPU multiplies it natively and accumulates in float32) with their
    error bound, the projections for the query groups, and the centred rows' int8 codes."""
    import torch

    (cb, pb), (cq, pq) = int8_code(tb, mu, v), int8_code(tq, mu, v)  # codes and projections of the centred rows
    floor_scales([cb, cq], [tb, tq], mu, SCALE_FLOOR)
    pq2, pb2 = pq.square().sum(1), pb.square().sum(1)
    ones = torch.ones(len(pq), 1)
    pb2_max = float(pb2.max())
    if not _bf16_gemm(pq.shape[1] + 3):
        aq = torch.cat([pq.mul(-2), ones, pq2[:, None]], 1)
        ab = torch.cat([pb, pb2[:, None], torch.ones(len(pb), 1)], 1)
        return pq, PrunedSearch(xq, xb, k, pq2, pb2_max, aq, ab.T.contiguous(), torch.zeros(len(pq)), cq, cb)
    hq, hb = pq.bfloat16(), pb.bfloat16()
    eq = torch.linalg.vector_norm(pq - hq.float(), dim=1)
    eb = float(torch.linalg.vector_norm(pb - hb.float(), dim=1).max())
    nhq = torch.linalg.vector_norm(hq.float(), dim=1)
    # |⟨p_q, p_b⟩ − ⟨p̂_q, p̂_b⟩| ≤ ‖p_q − p̂_q‖‖p_b‖ + ‖p̂_q‖‖p_b − p̂_b‖; float32 accumulation: within SLACK
    err = 2 * (eq * pb2_max**0.5 + nhq * eb)
    hi = bf16_round(pq2, up=False)  # ‖p_q‖² ≥ hi + lo, both bfloat16 (x − hi is exact in float32)
    lo = bf16_round(pq2 - hi.float(), up=False)
    aq = torch.cat([hq.mul(-2), ones.bfloat16(), hi[:, None], lo[:, None]], 1)
    ab = torch.cat([hb, bf16_round(pb2, up=False)[:, None], torch.ones(len(pb), 2, dtype=torch.bfloat16)], 1)
    return pq, PrunedSearch(xq, xb, k, pq2, pb2_max, aq, ab.T.contiguous(), err, cq, cb)


_BF16: list[bool] = []


def _bf16_gemm(k: int) -> bool:
    """Whether stage A runs in bfloat16: the CPU has native bfloat16 dot products (checked once) and torch's
    bfloat16 GEMM accumulates in float32 at this depth ``k`` (checked each call, ≈ 0.1 ms: 2ᵖ + (k − 1)·1 keeps its
    k − 1 in float32 accumulation and loses it in bfloat16)."""
    import torch

    if not _BF16:
        from ..device import cpu_has_native_bf16

        _BF16.append(cpu_has_native_bf16() and os.environ.get("CMRAUDIT_EXACT_KNN_BF16", "1") != "0")
    if not _BF16[0]:
        return False
    big = 2.0 ** max(8, (2 * k).bit_length())
    a = torch.ones(64, k, dtype=torch.bfloat16)
    b = torch.ones(k, 64, dtype=torch.bfloat16)
    b[0] = big
    return bool(((a @ b).float() - (big + k - 1)).abs().max() <= big / 128)
