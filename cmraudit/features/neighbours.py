"""Exact nearest-neighbour search with FAISS, batched so memory stays linear in the data.

``IndexFlatL2`` returns *squared* L2 distances; :func:`knn` returns true Euclidean
distances (square root taken) for metric ``"l2"`` and cosine *similarities* turned into
cosine distances ``1 - cos`` for metric ``"cosine"`` (normalised vectors + ``IndexFlatIP``).
Only Flat indexes are exact; approximate indexes are never used without exact re-ranking.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

METRICS = ("l2", "cosine")


@dataclass(frozen=True)
class Neighbours:
    """k nearest base vectors per query: ``distances`` [Q, k] ascending, ``indices`` [Q, k]."""

    distances: np.ndarray
    indices: np.ndarray
    metric: str


def _faiss():
    import faiss  # local import: faiss pulls OpenMP; keep import cost off the CLI start-up

    return faiss


def _prep(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)
        x = np.ascontiguousarray(x, dtype=np.float32)
    return x


def build_index(base: np.ndarray, *, metric: str = "l2", use_gpu: bool | None = None):
    """An exact FAISS index over ``base`` (GPU when available and ``use_gpu`` is not False)."""
    if metric not in METRICS:
        raise UsageError(f"metric must be one of {METRICS}, got {metric!r}")
    faiss = _faiss()
    xb = _prep(base, metric)
    d = xb.shape[1]
    index = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    if use_gpu is not False and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:  # pragma: no cover
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(xb)
    return index


def knn(
    query: np.ndarray,
    base: np.ndarray | None = None,
    *,
    k: int,
    metric: str = "l2",
    index=None,
    batch_size: int = 4096,
    exclude_self: bool = False,
) -> Neighbours:
    """Exact k-NN of each query row among ``base`` rows.

    ``exclude_self=True`` (query is base) drops each point's own match.
    Distances: Euclidean for ``l2``; ``1 - cosine similarity`` for ``cosine``.
    """
    if metric not in METRICS:
        raise UsageError(f"metric must be one of {METRICS}, got {metric!r}")
    if index is None:
        if base is None:
            raise UsageError("knn needs either base or a prebuilt index")
        index = build_index(base, metric=metric)
    n_base = index.ntotal
    kk = k + (1 if exclude_self else 0)
    if kk > n_base:
        raise UsageError(f"k={k} neighbours requested but the base has only {n_base - (1 if exclude_self else 0)} vectors")
    xq = _prep(query, metric)
    D = np.empty((len(xq), kk), dtype=np.float32)
    I = np.empty((len(xq), kk), dtype=np.int64)
    for s in range(0, len(xq), batch_size):
        d, i = index.search(xq[s : s + batch_size], kk)
        D[s : s + batch_size], I[s : s + batch_size] = d, i
    if metric == "l2":
        D = np.sqrt(np.maximum(D, 0.0))
    else:
        D = 1.0 - D
    if exclude_self:
        rows = np.arange(len(xq))
        is_self = I == rows[:, None]
        # drop the self match where found, else the last column
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), kk - 1)
        keep = np.ones_like(I, dtype=bool)
        keep[rows, drop] = False
        D = D[keep].reshape(len(xq), k)
        I = I[keep].reshape(len(xq), k)
    return Neighbours(distances=D.astype(np.float64), indices=I, metric=metric)
