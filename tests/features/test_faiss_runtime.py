"""FAISS and torch in one process, imported in either order: ``exact_knn``'s pruned search keeps its answers and
gives the caller's FAISS and torch thread settings back, whether the two share one OpenMP runtime (torch first) or
not (FAISS first, where it holds FAISS at one thread inside). Fresh interpreters: the import order is the test."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
{imports}
t = torch.get_num_threads()
f = faiss.omp_get_max_threads()
faiss.omp_set_num_threads(1)
shared = torch.get_num_threads() != t
faiss.omp_set_num_threads(f)
torch.set_num_threads(t)
out = {{"shared": shared, "torch": t}}
if len(sys.argv) > 1:
    import numpy as np
    from cmraudit.features.neighbours import KnnStats, exact_knn
    rng = np.random.default_rng(0)
    w = rng.standard_normal((12, 256)).astype(np.float32)
    base = (rng.standard_normal((3000, 12)) @ w + 0.1 * rng.standard_normal((3000, 256))).astype(np.float32)
    query = (rng.standard_normal((700, 12)) @ w + 0.1 * rng.standard_normal((700, 256))).astype(np.float32)
    faiss.omp_set_num_threads(2)
    st = KnnStats()
    D, I = exact_knn(query, base, 3, method="pruned", stats=st)
    index = faiss.IndexFlatL2(256)
    index.add(base)
    Df, If = index.search(query, 3)
    out.update(method=st.method, faiss_after=faiss.omp_get_max_threads(), torch_after=torch.get_num_threads(),
               same=float((I == If).all(1).mean()), rel=float(abs(D - Df).max() / Df.max()))
print(json.dumps(out))
"""


def _run(imports: str, *args: str) -> dict:
    code = PROBE.format(imports=imports)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("order, shared", [("import torch\nimport faiss", True), ("import faiss\nimport torch", False)])
def test_exact_knn_in_either_import_order_keeps_answers_and_settings(order, shared):
    r = _run(order, "search")
    if r["shared"] != shared:
        pytest.skip(f"this platform's wheels {'do not ' if shared else ''}share one OpenMP runtime in this order")
    assert r["method"] == "pruned"
    assert r["same"] > 0.99 and r["rel"] < 1e-4  # the rest are float ties (tests in test_exact_knn.py)
    assert r["faiss_after"] == 2 and r["torch_after"] == r["torch"]
