"""Precision, recall, density and coverage (Naeem et al. 2020), exact, with FAISS neighbours.

Definitions (as in the reference ``prdc`` package, k = ``nearest_k``, Euclidean distance):

- radius of a real point = distance to its k-th nearest *other* real point (likewise for fake);
- precision = share of synthetic points inside at least one real ball (``d < radius``, strict);
- recall    = share of real points inside at least one synthetic ball;
- density   = (1/k) · mean over synthetic points of the number of real balls containing it
  (can exceed 1; ≈ 1 when the two sets come from one distribution);
- coverage  = share of real points whose nearest synthetic point lies inside their own ball.

All four are computed exactly without an N×M distance matrix: k-NN queries go through
:func:`cmraudit.features.neighbours.knn`; ball membership is counted from k-NN lists whose
length doubles until the k-th neighbour lies beyond the largest radius.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..features.neighbours import build_index, knn


@dataclass(frozen=True)
class PRDCResult:
    """Precision, recall, coverage (shares in [0, 1]) and density (≥ 0) with the set sizes."""

    precision: float
    recall: float
    density: float
    coverage: float
    n_real: int
    n_synthetic: int
    nearest_k: int
    per_synthetic_in_real: np.ndarray  # bool [M]: inside some real ball
    per_synthetic_count: np.ndarray  # int [M]: number of real balls containing it
    per_real_in_synthetic: np.ndarray  # bool [N]: inside some synthetic ball
    per_real_covered: np.ndarray  # bool [N]


def knn_radii(x: np.ndarray, *, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row (Euclidean)."""
    return knn(x, x, k=k, exclude_self=True).distances[:, -1]


def count_in_balls(
    query: np.ndarray, centres: np.ndarray, radii: np.ndarray, *, max_entries: int = 4_000_000
) -> np.ndarray:
    """For each query row, the number of centres c with ``‖q − c‖ < radius_c`` (exact)."""
    query = np.asarray(query, dtype=np.float32)
    n_c = len(centres)
    r_max = float(np.max(radii))
    index = build_index(centres)
    counts = np.zeros(len(query), dtype=np.int64)
    todo = np.arange(len(query))
    k = min(n_c, 32)
    while len(todo):
        chunk = max(1, max_entries // k)
        unresolved = []
        for s in range(0, len(todo), chunk):
            rows = todo[s : s + chunk]
            nb = knn(query[rows], k=k, index=index)
            inside = nb.distances < radii[nb.indices]
            done = (nb.distances[:, -1] >= r_max) | (k == n_c)
            counts[rows[done]] = inside[done].sum(axis=1)
            unresolved.append(rows[~done])
        todo = np.concatenate(unresolved) if unresolved else np.empty(0, dtype=np.int64)
        k = min(n_c, 2 * k)
    return counts


def compute_prdc(real: np.ndarray, synthetic: np.ndarray, *, nearest_k: int = 5) -> PRDCResult:
    """PRDC of ``synthetic`` [M, D] against ``real`` [N, D] features (Naeem et al. 2020)."""
    real = np.asarray(real, dtype=np.float32)
    synthetic = np.asarray(synthetic, dtype=np.float32)
    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise UsageError(f"PRDC needs two [N, D] feature arrays of equal D, got {real.shape} and {synthetic.shape}")
    if min(len(real), len(synthetic)) <= nearest_k:
        raise UsageError(
            f"PRDC with nearest_k={nearest_k} needs more than {nearest_k} vectors per set, "
            f"got {len(real)} real and {len(synthetic)} synthetic; lower nearest_k or add samples"
        )
    real_r = knn_radii(real, k=nearest_k)
    fake_r = knn_radii(synthetic, k=nearest_k)
    fake_count = count_in_balls(synthetic, real, real_r)
    real_in_fake = count_in_balls(real, synthetic, fake_r) > 0
    nn_fake = knn(real, synthetic, k=1).distances[:, 0]
    covered = nn_fake < real_r
    return PRDCResult(
        precision=float((fake_count > 0).mean()),
        recall=float(real_in_fake.mean()),
        density=float(fake_count.mean() / nearest_k),
        coverage=float(covered.mean()),
        n_real=len(real),
        n_synthetic=len(synthetic),
        nearest_k=nearest_k,
        per_synthetic_in_real=fake_count > 0,
        per_synthetic_count=fake_count,
        per_real_in_synthetic=real_in_fake,
        per_real_covered=covered,
    )
