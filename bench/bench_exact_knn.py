"""exact_knn (certified pruned search) against faiss.IndexFlatL2, same process, same data.

    python bench/bench_exact_knn.py [--n 10000] [--repeats 3] [--no-record]

Data: phantom pixel vectors at √d × √d pixels (``phantom-<d>``: 256, 576, 1024, 4096) — base = the first n slices,
queries = the next n (other subjects) — and random Gaussian vectors (1024-d and 4096-d), where nothing can be pruned.
For k = 2 and k = 50 it reports the best of ``repeats`` rounds of IndexFlatL2, ``exact_knn(method="pruned")`` and
``exact_knn(method="auto")``, called in turn within each round; the exact distances per query; and how many query
rows differ from IndexFlatL2 (differences must be float ties: the test suite checks that). Writes its block into
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _record import machine, record


def _data(kind: str, n: int) -> np.ndarray:
    if kind.startswith("gauss-"):
        return np.random.default_rng(0).standard_normal((2 * n, int(kind[6:]))).astype(np.float32)
    from cmraudit.data.phantom import PhantomConfig, make_phantom

    size = int(round(int(kind[8:]) ** 0.5))  # phantom-<d>: slices of √d × √d pixels
    ds = make_phantom(PhantomConfig(subjects=(2 * n + 7) // 8, slices=8, size=size), seed=0)
    return np.ascontiguousarray(ds.images.reshape(len(ds.images), -1)[: 2 * n], dtype=np.float32)


def _interleaved(fs: dict, repeats: int) -> dict:
    """Best wall time of ``repeats`` rounds, each calling every ``f(stats)`` in turn (so a change in the machine's
    load falls on all of them alike), with the (result, stats) of the last call of each."""
    from cmraudit.features.neighbours import KnnStats

    times, out = {name: [] for name in fs}, {}
    for _ in range(repeats):
        for name, f in fs.items():
            st = KnnStats()
            t = time.perf_counter()
            out[name] = (f(st), st)
            times[name].append(time.perf_counter() - t)
    return {name: (min(times[name]), out[name]) for name in fs}


def main() -> None:
    import torch  # noqa: F401  (first, as the CLI loads it: FAISS then shares torch's OpenMP runtime)
    import faiss

    from cmraudit.features.neighbours import exact_knn

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kinds", default="phantom-256,phantom-576,phantom-1024,phantom-4096,gauss-1024,gauss-4096")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    state = machine()
    rows = ["| data | k | IndexFlatL2 | pruned | speed-up | auto | speed-up | exact distances / query | rows ≠ FAISS |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind in a.kinds.split(","):
        x = _data(kind, a.n)
        base, query = x[: a.n], x[a.n :]
        index = faiss.IndexFlatL2(base.shape[1])
        index.add(base)
        exact_knn(query[:500], base, 2, method="pruned")  # warm-up (thread pools, oneDNN kernels)
        for k in (2, 50):
            res = _interleaved({"flat": lambda st: index.search(query, k),
                                "pruned": lambda st: exact_knn(query, base, k, method="pruned", stats=st),
                                "auto": lambda st: exact_knn(query, base, k, stats=st)}, a.repeats)
            t_flat, ((Df, If), _) = res["flat"]
            t_pr, ((D, I), st) = res["pruned"]
            t_auto, (_, sa) = res["auto"]
            path = st.method if st.method == "pruned" else f"{st.method} ({st.reason})"
            rows.append(
                f"| {kind} {a.n}×{a.n} | {k} | {t_flat:.2f} s | {t_pr:.2f} s ({path}) | {t_flat / t_pr:.2f}× | "
                f"{t_auto:.2f} s ({sa.method}) | {t_flat / t_auto:.2f}× | {st.candidates_per_query:.0f} | "
                f"{int((I != If).any(1).sum())} |"
            )
            print(rows[-1], flush=True)
    body = f"- {state}; best of {a.repeats} interleaved rounds; torch threads: default\n\n" + "\n".join(rows)
    print(body)
    if not a.no_record:
        record("exact-knn", f"Certified pruned exact k-NN vs IndexFlatL2 (bench/bench_exact_knn.py --n {a.n})", body)


if __name__ == "__main__":
    main()
