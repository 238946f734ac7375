"""Exact k-NN: FAISS (cmraudit.features.neighbours.knn) vs scikit-learn brute force, identical results required.

    python bench/bench_neighbours.py [--n 10000] [--dim 1024] [--k 50] [--no-record]

Queries and base: N × dim float32 (dim 1024 = a 32² pixel space). Checks identical neighbour indices (ties aside) and
distances, reports wall time, speed-up and peak RSS, and writes its block to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _record import machine, peak_rss_mb, record


_SKLEARN = """
import json, sys, time
import numpy as np
from sklearn.neighbors import NearestNeighbors
d = sys.argv[1]
base, query = np.load(d + "/base.npy"), np.load(d + "/query.npy")
NearestNeighbors(n_neighbors=5, algorithm="brute").fit(base[:1000]).kneighbors(query[:100])  # warm-up
t, c = time.perf_counter(), time.process_time()
dist, idx = NearestNeighbors(n_neighbors=int(sys.argv[2]), algorithm="brute",
metric="euclidean").fit(base).kneighbors(query)
t, c = time.perf_counter() - t, time.process_time() - c
np.save(d + "/dist.npy", dist); np.save(d + "/idx.npy", idx)
print(json.dumps({"wall": t, "cpu": c}))
"""


def sklearn_brute(base: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """scikit-learn brute force in a fresh process (numpy + scikit-learn only).

    In a process that has imported torch and FAISS, scikit-learn's OpenMP distance reduction ran on one thread
    here (wall = CPU, 2× slower), which would flatter FAISS; a clean process gives it both cores.
    """
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "base.npy", base)
        np.save(Path(d) / "query.npy", query)
        out = subprocess.run([sys.executable, "-c", _SKLEARN, d, str(k)], check=True, capture_output=True, text=True)
        t = json.loads(out.stdout.strip().splitlines()[-1])
        return np.load(Path(d) / "dist.npy"), np.load(Path(d) / "idx.npy"), float(t["wall"]), float(t["cpu"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    from cmraudit.features.neighbours import knn

    rng = np.random.default_rng(0)
    base = rng.normal(size=(a.n, a.dim)).astype(np.float32)
    query = rng.normal(size=(a.n, a.dim)).astype(np.float32)
    knn(query[:100], base[:1000], k=5)  # warm-up (OpenMP pools)
    t, c = time.perf_counter(), time.process_time()
    nb = knn(query, base, k=a.k)
    t_faiss, c_faiss = time.perf_counter() - t, time.process_time() - c
    d_sk, i_sk, t_sk, c_sk = sklearn_brute(base, query, a.k)
    same = (nb.indices == i_sk).mean()
    dmax = float(np.abs(nb.distances - d_sk).max())
    gflop = 2.0 * a.n * a.n * a.dim / 1e9
    lines = [
        f"- data: {a.n} queries × {a.n} base vectors, {a.dim}-d float32, k = {a.k}; {machine()}",
        f"- FAISS exact (IndexFlatL2, batched): {t_faiss:.2f} s wall, {c_faiss:.2f} s CPU ({gflop / t_faiss:.1f} "
        "GFLOP/s of the distance GEMM)",
        f"- scikit-learn brute force (float32, in a clean process with only numpy + scikit-learn): {t_sk:.2f} s wall, "
        f"{c_sk:.2f} s CPU",
        f"- speed-up: **{t_sk / t_faiss:.1f}× wall, {c_sk / c_faiss:.1f}× CPU time**; identical neighbour indices: "
        f"{same:.4%} (differences only at float ties); "
        f"max |Δ distance| {dmax:.2e}",
        f"- peak RSS of the process: {peak_rss_mb():.0f} MB",
    ]
    body = "\n".join(lines)
    print(body)
    if not a.no_record:
        record(
            f"privacy-neighbours-{a.dim}",
            f"Exact nearest neighbours, {a.dim}-d (bench/bench_neighbours.py --dim {a.dim} --n {a.n} --k {a.k})",
            body,
        )


if __name__ == "__main__":
    main()
