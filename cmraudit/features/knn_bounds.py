"""The pieces of :func:`cmraudit.features.pruned_knn.exact_knn`'s pruned search: a projection, an int8 code, query
groups, upper bounds and one chunk of queries answered with two certified lower bounds (the method is described in
:mod:`.pruned_knn`).

Every lower bound is widened by ``SLACK`` (relative to ``‖q‖² + max ‖b‖²``) for the float32 arithmetic that computes
it: projections and norms (sums of ≤ d terms), the basis's cast from float64, the int32 → float32 conversion of the
int8 products and the bound's own few operations each err by ≲ 1e-5 of those norms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SLACK = 1e-4  # relative float32 slack of each lower bound (of its ‖q‖² + max ‖b‖²)


def basis(base, m: int, seed: int, sample: int = 1024, held_out: int = 256):
    """Orthonormal d × m basis of the base's leading principal subspace (randomised range finder on a seeded
    subsample, one power iteration, QR in float64), the base's mean, and the share of variance the basis holds on
    ``held_out`` other base rows (an unbiased check)."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    mu = base.mean(0)
    perm = torch.randperm(len(base), generator=g)
    n_fit = min(max(sample, 2 * m), max(1, len(base) - held_out))
    sub = base[perm[:n_fit]] - mu
    y = sub.T @ (sub @ torch.randn(base.shape[1], m, generator=g))
    v = torch.linalg.qr(y.double())[0].float()
    v = torch.linalg.qr((sub.T @ (sub @ v)).double())[0].float()
    test = base[perm[n_fit : n_fit + held_out]] - mu
    if len(test) == 0:
        return mu, v, 1.0
    return mu, v, float((test @ v).square().sum() / test.square().sum().clamp_min(1e-30))


def dominant_mean(base: np.ndarray) -> np.ndarray | None:
    """The mean of ``base`` [n, d] float32 where it holds more than half its rows' energy (``‖μ‖² > E‖x‖² / 2``),
    else None: where a common offset dominates, GEMM-form squared distances ``‖x‖² + ‖y‖² − 2⟨x, y⟩`` cancel, and
    searching the rows centred on this mean gives the same distances without the cancellation."""
    if not len(base):
        return None
    mu, flat = base.mean(0), base.ravel()
    with np.errstate(over="ignore"):  # rows near 1e17 overflow float32 sums of squares: redo those in float64
        m2, e = float(mu @ mu), float(flat @ flat)
    if not np.isfinite(m2 + e):
        m2, e = float(mu.astype(np.float64) @ mu), float(flat.astype(np.float64) @ flat)
    return mu if m2 > 0.5 * e / len(base) else None


@dataclass
class Int8Code:
    """Per-row int8 code ``x = s·q + e`` of centred rows, with ``‖x‖²``, ``‖h‖ = ‖s·q‖`` and ``‖e‖``."""

    q: object
    s: object
    sq_norm: object
    nh: object
    ne: object


def int8_code(x, mu, v, rows: int = 512) -> tuple[Int8Code, object]:
    """Code the rows of ``x − mu`` with scale ``s = max|·| / 127`` per row, and project them on ``v``, a block of
    rows at a time: the block stays in cache (whole-matrix passes measured 4× slower, most of it first-touch page
    faults). The projection is of the centred rows: ``x @ v − mu @ v`` would cancel under a large common offset."""
    import torch

    n = len(x)
    code = Int8Code(torch.empty(x.shape, dtype=torch.int8), *(torch.empty(n) for _ in range(4)))
    proj = torch.empty(n, v.shape[1])
    for a in range(0, n, rows):
        xb = x[a : a + rows] - mu
        torch.mm(xb, v, out=proj[a : a + rows])
        _code_rows(code, slice(a, a + rows), xb, xb.abs().amax(1).clamp_min_(1e-30).div_(127.0))
    return code, proj


def floor_scales(codes: list[Int8Code], xs: list, mu, floor: float) -> None:
    """Recode the rows whose scale is below ``floor`` × the largest scale of all ``codes`` with that floor (coarser
    codes, their error measured all the same). This bounds ``max s / min s``, so stage B's threshold arithmetic
    (``1 / s``) stays far from float32's range: all-zero rows, e.g. a row equal to the mean, would overflow it."""
    import torch

    top = max(float(c.s.max()) for c in codes if len(c.s))
    for c, x in zip(codes, xs):
        low = (c.s < floor * top).nonzero()[:, 0]
        if len(low):
            _code_rows(c, low, x[low] - mu, torch.full((len(low),), floor * top))


def _code_rows(code: Int8Code, idx, xb, sc) -> None:
    import torch

    r = (xb / sc[:, None]).round_().clamp_(-127, 127)
    code.q[idx] = r.to(torch.int8)
    code.s[idx] = sc
    code.sq_norm[idx] = xb.square().sum(1)
    code.nh[idx] = torch.linalg.vector_norm(r, dim=1) * sc
    code.ne[idx] = torch.linalg.vector_norm(r.mul_(sc[:, None]).sub_(xb), dim=1)


def query_groups(pq: np.ndarray, block: int, cap: int, seed: int) -> list[np.ndarray]:
    """Query rows grouped by FAISS's k-means on their projections (≈ ``block`` a group, none above ``cap``)."""
    n = len(pq)
    if n <= block:
        return [np.arange(n)]
    import faiss

    pq = np.ascontiguousarray(pq[:, :16])  # the leading coordinates: groups as good as from all (measured)
    km = faiss.Kmeans(pq.shape[1], n // block, niter=8, seed=int(seed), min_points_per_centroid=1)
    km.train(pq)
    lab = km.index.search(pq, 1)[1][:, 0]
    order = np.argsort(lab, kind="stable")
    cuts = np.flatnonzero(np.diff(lab[order])) + 1
    return [g[i : i + cap] for g in np.split(order, cuts) for i in range(0, len(g), cap)]


def chunks(groups: list[np.ndarray], first: int, rows: int):
    """Consecutive groups in chunks of ≤ ``rows`` query rows (the first ≤ ``first``: the probe), ≥ 1 group each."""
    out, size, limit = [], 0, first
    for g in groups:
        if out and size + len(g) > limit:
            yield out
            out, size, limit = [], 0, rows
        out.append(g)
        size += len(g)
    if out:
        yield out


def bf16_round(x, up: bool):
    """``x`` (float32) rounded to bfloat16 towards +∞ (``up``) or −∞: a directed rounding, so bounds stay bounds."""
    import torch

    h = x.bfloat16()
    off = h.float() < x if up else h.float() > x
    return torch.where(off, torch.nextafter(h, torch.full_like(h, float("inf") if up else float("-inf"))), h)


def upper_bounds(keys, xq: np.ndarray, xb: np.ndarray, rows: np.ndarray, k: int):
    """Per query, an upper bound on its k-th nearest distance: the k-th smallest exact distance among ``k + k/4``
    distinct base rows with small projected bounds (the best of each of the ``k + k/4`` best strided groups
    ``{j, j + G, j + 2G, …}`` of ≈ 10 rows; 2k measured no faster). ``keys`` order as stage A's bounds. Returns the
    bounds, and the rows [Q, kk] with their exact distances (the final top k reuses them)."""
    import torch

    n, nb = keys.shape
    kk = min(nb, max(k + k // 4, k + 2))
    ng = max(kk, nb // 10)
    per = nb // ng
    top = torch.topk(keys[:, : per * ng].view(n, per, ng).amin(1), kk, dim=1, largest=False, sorted=False).indices
    cols = (top[:, :, None] + ng * torch.arange(per)).view(n, -1)  # the members of each chosen group
    member = torch.gather(keys, 1, cols).view(n, kk, per).argmin(2)
    cand = (top + ng * member).numpy()
    dist = pair_distances(xq, np.repeat(rows, kk), xb, cand.ravel()).reshape(n, kk)  # query rows in place: no copy
    return np.partition(dist, k - 1, axis=1)[:, k - 1] * np.float32(1 + SLACK), cand, dist


def pair_distances(xq: np.ndarray, qi, xb: np.ndarray, bi) -> np.ndarray:
    """Exact squared L2 distances of the pairs (``xq[qi]``, ``xb[bi]``), by differences (no GEMM cancellation)."""
    import faiss

    qi, bi = np.ascontiguousarray(qi, np.int64), np.ascontiguousarray(bi, np.int64)
    dist = np.empty(len(qi), np.float32)
    faiss.pairwise_indexed_L2sqr(xq.shape[1], len(qi), faiss.swig_ptr(xq), faiss.swig_ptr(qi),
                                 faiss.swig_ptr(xb), faiss.swig_ptr(bi), faiss.swig_ptr(dist))
    return dist


@dataclass
class PrunedSearch:
    """One call's prepared operands; :meth:`chunk` answers a chunk of query groups.

    Stage A computes ``s = ‖p_q‖²↓ + ‖p_b‖²↓ − 2⟨p_q, p_b⟩`` for every pair of a chunk as one GEMM of ``aq`` and
    ``abt``: ``[−2 p_q, 1, ‖p_q‖²]`` and ``[p_b, ‖p_b‖², 1]``, in bfloat16 where the CPU multiplies it natively
    (the norms rounded down, ``‖p_q‖²`` as two bfloat16 terms), else float32. ``err_a`` [Q] bounds the error the
    rounded inputs make in ``s``. The output's rounding is monotone and keeps signs, so comparing it with the
    threshold rounded up loses nothing; and as ``s`` is a squared distance, its negative values (rounding) can be
    set to zero, after which bfloat16 values order as their int16 bit patterns, and torch's int16 reductions are
    2–8× faster than its bfloat16 ones (measured)."""

    xq: np.ndarray
    xb: np.ndarray
    k: int
    pq2: object  # [Q] ‖p_q‖²
    pb2_max: float  # max ‖p_b‖²
    aq: object
    abt: object
    err_a: object
    cq: Int8Code
    cb: Int8Code

    def __post_init__(self):
        import torch

        cb = self.cb
        # β = ‖b‖²/(2 s_b), δ = 1/s_b, ‖e_b‖/s_b, ‖h_b‖/s_b, ‖e_b‖/s_b, 1
        self.coef_b = torch.stack([cb.sq_norm / (2 * cb.s), 1 / cb.s, cb.ne / cb.s, cb.nh / cb.s, cb.ne / cb.s,
                                   torch.ones(len(cb.s))])
        self.coef_max = self.coef_b.abs().amax(1).tolist()
        self.d_round = 127.0**2 * self.cb.q.shape[1] * 2.0**-24  # int32 → float32 rounding of d
        self.mark = np.zeros(0, bool)  # a chunk's upper-bound pairs (reset after each chunk)

    def _margin(self, s_q, thr, nh_q, ne_q):
        """Bound on the float32 error of the threshold on d (six products summed, each operand, product and sum
        rounded: ≤ 2⁻²⁰ of the terms' magnitudes) plus the rounding of d itself to float32 in the comparison."""
        b, delta, e, h, _, _ = self.coef_max
        terms = b + thr.abs() / 2 * delta + nh_q * e + ne_q * h + ne_q * e
        return 2.0**-20 * terms / s_q + self.d_round + 1

    def _stage_a(self, t):
        """Stage A's bounds of a chunk as order keys (int16 bit patterns of the clamped bfloat16 values, or the
        float32 values) and the function that turns thresholds into keys."""
        import torch

        s = self.aq[t] @ self.abt
        if s.dtype != torch.bfloat16:
            return s, lambda thr: thr
        keys = s.view(torch.int16).clamp_(min=0)  # negative values (sign bit set) → +0.0
        return keys, lambda thr: bf16_round(thr, up=True).view(torch.int16)

    def chunk(self, chunk: list[np.ndarray], rows: np.ndarray, D: np.ndarray, I: np.ndarray):
        """Fill ``rows`` of D, I. Returns (exact distances computed, int8 products computed)."""
        import torch

        t = torch.from_numpy(rows)
        keys, to_key = self._stage_a(t)
        u, cand, cdist = upper_bounds(keys, self.xq, self.xb, rows, self.k)
        u = torch.from_numpy(u)
        # A keeps a pair while s ≤ U + err_a (+ float slack); thresholds ≥ 0, so int16 differences cannot overflow
        thr_a = to_key(u + SLACK * (self.pq2[t] + self.pb2_max) + self.err_a[t])[:, None]
        cq, cb = self.cq, self.cb
        # B keeps a pair while ‖b‖² − 2·s_q·s_b·d ≤ thr_b + 2·err_qb (d = ⟨c_q, c_b⟩, exact int32; err_qb =
        # ‖h_q‖‖e_b‖ + ‖e_q‖‖h_b‖ + ‖e_q‖‖e_b‖), i.e. while d ≥ [‖b‖² − thr_b − 2·err_qb] / (2·s_q·s_b) − margin_q:
        # a sum of rank-one terms, so one K = 6 GEMM gives every pair's threshold on d
        thr_b = u - (1 - SLACK) * cq.sq_norm[t] + SLACK * float(cb.sq_norm.max())
        sq = cq.s[t]
        coef = torch.stack([1 / sq, -thr_b / (2 * sq), -cq.nh[t] / sq, -cq.ne[t] / sq, -cq.ne[t] / sq,
                            -self._margin(sq, thr_b, cq.nh[t], cq.ne[t])], 1)
        local, found, share, off = [], [], 0, 0
        for g in chunk:
            n = len(g)
            # rows A leaves to any query of g (differences of keys keep their sign)
            union = ((keys[off : off + n] - thr_a[off : off + n]).amin(0) <= 0).nonzero()[:, 0]
            share += n * len(union)
            gt = torch.from_numpy(g)
            dots = torch._int_mm(cq.q.index_select(0, gt), cb.q.index_select(0, union).T)  # exact int32 sums
            hit = (dots >= coef[off : off + n] @ self.coef_b[:, union]).nonzero().numpy()  # rows in chunk order
            local.append(hit[:, 0] + off)
            found.append(union.numpy()[hit[:, 1]])
            off += n
        local, found = self._new_pairs(np.concatenate(local), np.concatenate(found), cand)
        e = k_smallest(self.xq, self.xb, rows, local, found, self.k, D, I, (cand, cdist))
        return cand.size + e, share

    def _new_pairs(self, local: np.ndarray, found: np.ndarray, cand: np.ndarray):
        """The surviving pairs without those whose distance the upper bounds already computed."""
        nb = len(self.xb)
        if len(self.mark) < len(cand) * nb:
            self.mark = np.zeros(len(cand) * nb, bool)  # one flag per pair of a chunk, all False between calls
        known = (np.arange(len(cand))[:, None] * nb + cand).ravel()
        self.mark[known] = True
        keep = ~self.mark[local * nb + found]
        self.mark[known] = False
        return local[keep], found[keep]


def k_smallest(xq, xb, rows, local, bi, k: int, D, I, known):
    """Exact distances of the surviving pairs (query ``rows[local]``, base ``bi``; ``local`` ascending), merged with
    ``known`` (rows [Q, kk] and their exact distances, none of them among the pairs), and each query's k smallest
    into D, I, ties broken by index: one int64 key per pair (the float32 bits of a distance ≥ 0 order as
    integers). Every query has ≥ k candidates: the kk ≥ k known rows. Returns the distances computed."""
    bi = bi.astype(np.int64)
    dist = pair_distances(xq, rows[local], xb, bi)
    cand, cdist = known
    kk = cand.shape[1]
    count = np.bincount(local, minlength=len(rows))
    pad = np.full((len(rows), kk + max(k, int(count.max(initial=0)))), np.iinfo(np.int64).max)
    pad[:, :kk] = (cdist.view(np.int32).astype(np.int64) << 32) | cand
    pad[local, kk + np.arange(len(local)) - (np.cumsum(count) - count)[local]] = (
        dist.view(np.int32).astype(np.int64) << 32) | bi
    best = np.sort(np.partition(pad, k - 1, axis=1)[:, :k], axis=1)
    D[rows] = (best >> 32).astype(np.int32).view(np.float32)
    I[rows] = best & 0xFFFFFFFF
    return len(dist)
