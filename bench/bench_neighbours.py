"""Exact k-NN: FAISS (cmraudit.features.neighbours.knn) vs scikit-learn brute force, identical results required.

    python bench/bench_neighbours.py [--n 10000] [--dim 1024] [--k 50] [--no-record]

Queries and base: N × dim float32 (dim 1024 = a 32² pixel space). Checks identical neighbour indices (ties aside) and
distances, reports wall time, speed-up and peak RSS, and writes its block to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _record import machine, peak_rss_mb, record


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    from sklearn.neighbors import NearestNeighbors

    from cmraudit.features.neighbours import knn

    rng = np.random.default_rng(0)
    base = rng.normal(size=(a.n, a.dim)).astype(np.float32)
    query = rng.normal(size=(a.n, a.dim)).astype(np.float32)
    knn(query[:100], base[:1000], k=5)  # warm-up (OpenMP pools)
    t, c = time.perf_counter(), time.process_time()
    nb = knn(query, base, k=a.k)
    t_faiss, c_faiss = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    d_sk, i_sk = NearestNeighbors(n_neighbors=a.k, algorithm="brute", metric="euclidean").fit(base).kneighbors(query)
    t_sk, c_sk = time.perf_counter() - t, time.process_time() - c
    same = (nb.indices == i_sk).mean()
    dmax = float(np.abs(nb.distances - d_sk).max())
    gflop = 2.0 * a.n * a.n * a.dim / 1e9
    lines = [
        f"- data: {a.n} queries × {a.n} base vectors, {a.dim}-d float32, k = {a.k}; {machine()}",
        f"- FAISS exact (IndexFlatL2, batched): {t_faiss:.2f} s wall, {c_faiss:.2f} s CPU ({gflop / t_faiss:.1f} GFLOP/s of the distance GEMM)",
        f"- scikit-learn brute force: {t_sk:.2f} s wall, {c_sk:.2f} s CPU",
        f"- speed-up: **{t_sk / t_faiss:.1f}× wall, {c_sk / c_faiss:.1f}× CPU time**; identical neighbour indices: {same:.4%} (differences only at float ties); "
        f"max |Δ distance| {dmax:.2e}",
        f"- peak RSS of the process: {peak_rss_mb():.0f} MB",
    ]
    body = "\n".join(lines)
    print(body)
    if not a.no_record:
        record(f"privacy-neighbours-{a.dim}", f"Exact nearest neighbours, {a.dim}-d (bench/bench_neighbours.py --dim {a.dim} --n {a.n} --k {a.k})", body)


if __name__ == "__main__":
    main()
