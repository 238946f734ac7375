"""Exact k-NN that does less than the full distance GEMM: a certified lower bound prunes, exact distances decide.

:func:`exact_knn` returns what ``faiss.IndexFlatL2`` returns — squared L2 distances, ascending, with the indices
of the base rows — ties aside, but computes the full-precision distance only for a few candidates per query:

1. **Projection.** An orthonormal basis ``V`` (d × m) of the base's principal subspace, from a randomised range
   finder on a seeded subsample (one power iteration, QR in float64). For any x, y:
   ``‖Vᵀ(x − y)‖² ≤ ‖x − y‖²`` (Bessel), so projected distances are lower bounds whatever the basis quality;
   a poor basis only costs candidates, never correctness.
2. **A cheap GEMM with a certified error.** Projected vectors get a two-level int8 code per row,
   ``p = s·(q1 + q2/127) + e``; two int8 GEMMs (``torch._int_mm``, exact int32 sums, 4× the float32 rate with
   VNNI) give ``q1·q1 + (q1·q2 + q2·q1)/127``. The error of the inner product — the dropped ``q2·q2`` term and the
   residual ``e`` — is bounded per query by Cauchy–Schwarz on the *measured* norms (``_error_bound``), widened by
   a relative slack for the float32 arithmetic of the bound itself. (bfloat16 was tried first: CPU torch has no
   bfloat16 GEMM with float32 output, and rounding the output to 8 bits made the bound ~20× looser.)
3. **Candidates and certificate.** For each query the ``c`` smallest scores are re-ranked with exact float32
   distances (``faiss.fvec_L2sqr_by_idx``); ``U`` is the k-th exact distance among them. Every other base row
   has a lower bound at least that of the c-th candidate; if that exceeds ``U`` no other row can enter the top k,
   and the query is certified. Uncertified queries retry with 2× more candidates; past ``max_candidates`` they
   are searched by ``IndexFlatL2`` itself.
4. **No slower than FAISS where pruning cannot help.** If the basis holds under ``MIN_ENERGY`` of the variance
   of held-out base rows, nothing is projected. Then a first block of 64 queries is a probe: if it needs too many
   candidates (random Gaussian vectors, where every distance concentrates), the rest goes to ``IndexFlatL2``.

Why hand-written: neither FAISS nor scikit-learn offers an exact search below the float32 GEMM cost; FAISS's
own pieces (``IndexFlatL2``, ``fvec_L2sqr_by_idx``) do the exact parts. ``method="auto"`` prunes only where it
measured faster (dimension ≥ ``MIN_DIM``, k ≤ ``MAX_AUTO_K``, int8 dot products in the CPU); the frontier (why 3×
over IndexFlatL2 is out of reach at 1024-d on 2 cores) is in docs/benchmarks.md.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..device import cpu_flags
from ..errors import UsageError

MIN_PAIRS = 4_000_000  # below this many query × base pairs, IndexFlatL2 alone is faster
MIN_DIM = 2048  # "auto" prunes from this dimension on (at 1024-d it measured no faster than IndexFlatL2 here)
MAX_AUTO_K = 8  # "auto" prunes up to this k (at k = 50 re-ranking hundreds of candidates measured slower)
METHODS = ("auto", "pruned", "flat")
MIN_ENERGY = 0.8  # below this share of variance in the projection, lower bounds are too loose to prune
SLACK = 1e-4  # relative float32 slack of the lower bound (of ‖pq‖² + max ‖pb‖²)
PROBE = 64  # queries in the first block, which decides whether pruning pays


@dataclass
class KnnStats:
    """How :func:`exact_knn` spent its work (for benchmarks and tests)."""

    method: str = "pruned"  # "pruned" | "faiss" (small problem, low dimension, no int8 dot products, or the probe)
    rank: int = 0
    candidates_per_query: float = 0.0
    retried_queries: int = 0
    faiss_queries: int = 0  # queries answered by IndexFlatL2 (uncertified after max_candidates, or after the probe)
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
    a = np.asarray(x)
    if a.ndim != 2:
        raise UsageError(f"exact_knn: {name} must be a 2-D array [n, d], got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise UsageError(f"exact_knn: {name} contains NaN or infinite values")
    return a


class _Flat:
    """``IndexFlatL2`` over the base, built on first use and reused by every fallback of one call."""

    def __init__(self, base: np.ndarray):
        self.base, self.index = base, None

    def __call__(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            import faiss

            self.index = faiss.IndexFlatL2(self.base.shape[1])
            self.index.add(self.base)
        return self.index.search(np.ascontiguousarray(query), k)


def _basis(base, m: int, seed: int, sample: int = 2048, held_out: int = 512):
    """Orthonormal d × m basis of the base's leading principal subspace (randomised range finder), the base's
    mean, and the share of variance the basis holds on ``held_out`` other base rows (an unbiased check)."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    mu = base.mean(0)
    perm = torch.randperm(len(base), generator=g)
    n_fit = min(sample, max(1, len(base) - held_out))
    sub = base[perm[:n_fit]] - mu
    y = sub.T @ (sub @ torch.randn(base.shape[1], m, generator=g))
    v = torch.linalg.qr(y.double())[0].float()
    v = torch.linalg.qr((sub.T @ (sub @ v)).double())[0].float()  # one power iteration: better captured energy
    test = base[perm[n_fit : n_fit + held_out]] - mu
    if len(test) == 0:
        return mu, v, 1.0
    return mu, v, float((test @ v).square().sum() / test.square().sum().clamp_min(1e-30))


def _quantised(p):
    """Two-level int8 code of ``p``: ``p = s·(q1 + q2/127) + e`` with per-row scale ``s = max|p|/127``.

    Returns the codes, ``s``, and the float32 norms of ``h = s·(q1 + q2/127)``, of the residual ``e`` and of ``q2``.
    """
    import torch

    s = p.abs().amax(1).clamp_min(1e-30) / 127.0
    q1 = torch.round(p / s[:, None])
    r = p - s[:, None] * q1
    q2 = torch.round(r * (127.0 / s[:, None]))
    h = s[:, None] * (q1 + q2 / 127.0)
    norms = [torch.linalg.vector_norm(x, dim=1) for x in (h, p - h, q2)]
    return q1.to(torch.int8), q2.to(torch.int8), s, *norms


def _error_bound(nh, ne, s, nq2, b: dict):
    """Per-query bound on |2⟨pq, pb⟩ − 2·s_q·s_b·(G11 + G12/127)| over every base row (Cauchy–Schwarz)."""
    dropped = s * nq2 * b["s_q2"] / 127.0**2  # the omitted q2·q2 term
    return 2 * (dropped + nh * b["ne"] + ne * b["nh"] + ne * b["ne"])


def exact_knn(
    query,
    base,
    k: int,
    *,
    method: str = "auto",
    rank: int | None = None,
    block: int = 512,
    max_candidates: int = 2048,
    seed: int = 0,
    stats: KnnStats | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest base rows of each query row: ``(distances, indices)`` in FAISS's convention.

    ``distances`` [Q, k] float32 are squared L2, ascending; ``indices`` [Q, k] int64. Identical to
    ``faiss.IndexFlatL2(d).search(query, k)`` up to float ties. ``method``: ``"flat"`` (IndexFlatL2),
    ``"pruned"`` (the certified pruned search wherever it can run) or ``"auto"`` (pruned only where it measured
    faster: ≥ ``MIN_DIM`` dimensions, k ≤ ``MAX_AUTO_K``, int8 dot products in the CPU, ≥ ``MIN_PAIRS`` pairs).
    ``rank`` is the projection's dimension (default ``min(384, d // 2)``), ``block`` the queries per GEMM block,
    ``seed`` the basis's subsample and sketch. Pass a :class:`KnnStats` to learn which path ran and its
    candidates per query.
    """
    import torch

    if method not in METHODS:
        raise UsageError(f"exact_knn: method must be one of {METHODS}, got {method!r}")
    xq, xb = _as_matrix(query, "query"), _as_matrix(base, "base")
    if xq.shape[1] != xb.shape[1]:
        raise UsageError(f"exact_knn: query has {xq.shape[1]} columns but base has {xb.shape[1]}")
    k = int(k)
    if not 1 <= k <= len(xb):
        raise UsageError(f"exact_knn: k must be in [1, {len(xb)}] (the base's size), got {k}")
    st = stats if stats is not None else KnnStats()
    d = xb.shape[1]
    m = int(rank) if rank else min(384, d // 2)
    if not 1 <= m <= min(d, 1024):  # 1024: the int32 sums of the two-level code cannot overflow below it
        raise UsageError(f"exact_knn: rank must be in [1, {min(d, 1024)}], got {m}")
    st.rank = m
    why = ""
    if method == "flat":
        why = "method='flat'"
    elif 4 * k > max_candidates or m >= d:
        why = f"k = {k} / rank = {m} leave nothing to prune (max_candidates = {max_candidates}, d = {d})"
    elif method == "auto" and len(xq) * len(xb) < MIN_PAIRS:
        why = f"small problem ({len(xq)} × {len(xb)} pairs < {MIN_PAIRS})"
    elif method == "auto" and k > MAX_AUTO_K:
        why = f"k = {k} > {MAX_AUTO_K}: re-ranking the candidates measured slower than IndexFlatL2"
    elif method == "auto" and d < MIN_DIM:
        why = f"dimension {d} < {MIN_DIM}: pruning measured no faster than IndexFlatL2 there"
    elif method == "auto" and not _cpu_has_fast_int8():
        why = "CPU without int8 dot products (AVX512-VNNI / AVX-VNNI / AMX)"
    flat = _Flat(xb)
    if why:
        st.method, st.reason, st.faiss_queries = "faiss", why, len(xq)
        return flat(xq, k)

    tb, tq = torch.from_numpy(xb), torch.from_numpy(xq)
    mu, v, energy = _basis(tb, m, seed)
    st.extra["energy"] = energy
    if energy < MIN_ENERGY:  # e.g. random Gaussian vectors: the projection cannot bound much, don't project the base
        st.method, st.faiss_queries = "faiss", len(xq)
        st.reason = f"the rank-{m} subspace holds {energy:.0%} of held-out variance (< {MIN_ENERGY:.0%}): no pruning"
        return flat(xq, k)
    pb = (tb - mu) @ v
    b1, b2, sb, nhb, neb, nq2b = _quantised(pb)
    pb2 = (pb.double() ** 2).sum(1).float()
    worst = {"s_q2": float((sb * nq2b).max()), "nh": float(nhb.max()), "ne": float(neb.max())}
    g11_b = b1.T
    gx_b = torch.cat([b2, b1], dim=1).T  # [q1, q2]·[q2, q1] = the two cross terms in one GEMM
    sb_row = sb[None, :]
    D = np.empty((len(xq), k), np.float32)
    I = np.empty((len(xq), k), np.int64)
    c0 = max(48, 4 * k)
    probe_cap = max(256, 16 * k)
    n_cand = 0
    starts = [0, *range(min(PROBE, len(xq)), len(xq), block)]  # a small probe block first
    done = 0
    for a, b in zip(starts, [*starts[1:], len(xq)]):
        pq = (tq[a:b] - mu) @ v
        q1, q2, sq, nhq, neq, nq2q = _quantised(pq)
        pq2 = (pq.double() ** 2).sum(1).float()
        # lower bound offset; the slack covers float32 rounding: the projection (d-term sums), the basis's cast from
        # float64, the score and the bound's own arithmetic (each ≤ ~1e-5 of the norms; 1e-4 leaves a margin)
        offset = (pq2 - _error_bound(nhq, neq, sq, nq2q, worst) - SLACK * (pq2 + float(pb2.max()))).numpy()
        t = torch._int_mm(q1, g11_b).mul_(127).add_(torch._int_mm(torch.cat([q1, q2], dim=1), gx_b))  # exact
        score = t.float().mul_(sb_row).mul_((sq * (-2.0 / 127.0))[:, None]).add_(pb2)  # ‖pb‖² − 2⟨pq, pb⟩
        cap = min(max_candidates, probe_cap) if a == 0 else max_candidates
        n_cand += _certify_block(xq, xb, flat, score, offset, a, k, c0, cap, D, I, st)
        done = b
        if a == 0 and (st.faiss_queries > b // 4 or n_cand / b > probe_cap):
            st.extra["probe"] = (f"the first {b} queries needed {n_cand / b:.0f} candidates each "
                                 f"({st.faiss_queries} uncertified at {cap})")
            break
    if done < len(xq):
        D[done:], I[done:] = flat(xq[done:], k)
        st.faiss_queries += len(xq) - done
        st.method, st.reason = "faiss", st.extra["probe"] + "; the rest went to IndexFlatL2"
    st.candidates_per_query = n_cand / max(done, 1)
    return D, I


def _certify_block(xq, xb, flat: _Flat, score, offset, a: int, k: int, c0: int, cmax: int, D, I, st: KnnStats) -> int:
    """Fill rows a… of D, I from one block's scores; returns how many exact distances were computed."""
    import faiss
    import torch

    n, nb = score.shape
    todo = np.arange(n)
    c = c0
    spent = 0
    while len(todo):
        c = min(c, nb)
        vals, ids = torch.topk(score[torch.from_numpy(todo)], c, dim=1, largest=False, sorted=False)
        ids = ids.numpy().astype(np.int64, copy=False)
        rows = todo + a
        q = np.ascontiguousarray(xq[rows])
        dist = np.empty(ids.shape, np.float32)
        faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(dist), faiss.swig_ptr(q), faiss.swig_ptr(xb), faiss.swig_ptr(ids),
                                xq.shape[1], len(rows), c)
        spent += dist.size
        if k < c:  # the k smallest, then sorted by (distance, index)
            part = np.argpartition(dist, k - 1, axis=1)[:, :k]
            dist, ids = np.take_along_axis(dist, part, 1), np.take_along_axis(ids, part, 1)
        order = np.lexsort((ids, dist), axis=1)
        dk, ik = np.take_along_axis(dist, order, 1), np.take_along_axis(ids, order, 1)
        lower = vals.max(dim=1).values.numpy() + offset[todo]  # every row outside the c is at least this far
        ok = (lower > dk[:, -1]) | (c >= nb)
        D[rows[ok]], I[rows[ok]] = dk[ok], ik[ok]
        todo = todo[~ok]
        if len(todo) and c >= cmax:
            r = todo + a
            D[r], I[r] = flat(xq[r], k)
            st.faiss_queries += len(r)
            break
        st.retried_queries += len(todo)
        c *= 2
    return spent
