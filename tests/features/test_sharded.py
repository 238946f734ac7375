"""Sharded exact k-NN (cmraudit.features.sharded): equal to one FAISS index over the concatenated shards, exact merge,
deterministic ties, clear errors; the Ray backend on a 2-CPU local cluster equals the local one."""
from __future__ import annotations

import json
import os
import sys

import faiss
import numpy as np
import pytest

from cmraudit.errors import DataError, MissingExtraError, UsageError
from cmraudit.features import PixelFeatures
from cmraudit.features.sharded import merge_topk, sharded_knn
from cmraudit.features.shards import ShardSpec, load_manifest, synthetic_rows, synthetic_shards

SIZES = (37, 3, 410, 150)  # uneven; the second shard is smaller than k


def _flat(base, q, k):
    ix = faiss.IndexFlatL2(base.shape[1])
    ix.add(np.ascontiguousarray(base, dtype=np.float32))
    d, i = ix.search(np.ascontiguousarray(q, dtype=np.float32), k)
    return np.sqrt(np.maximum(d, 0)), i


@pytest.fixture(scope="module")
def vector_shards(tmp_path_factory):
    """Four .npy shards of uneven size (600 rows, 24-d) and 120 queries: 60 planted noisy copies of known rows."""
    d = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    base = rng.normal(size=(sum(SIZES), 24)).astype(np.float32)
    specs, a = [], 0
    for j, n in enumerate(SIZES):
        np.save(d / f"part{j}.npy", base[a : a + n].astype(np.float64 if j == 2 else np.float32))  # any real dtype
        specs.append({"kind": "vectors", "path": f"part{j}.npy"})
        a += n
    (d / "manifest.json").write_text(json.dumps({"shards": specs}))
    planted = rng.choice(len(base), size=60, replace=False)
    q = np.concatenate([base[planted] + 1e-3 * rng.normal(size=(60, 24)), rng.normal(size=(60, 24))])
    return d, base, q.astype(np.float32), planted


def test_local_equals_single_index_and_finds_planted_rows(vector_shards):
    d, base, q, planted = vector_shards
    nb = sharded_knn(q, d / "manifest.json", k=5)  # relative paths resolved from the manifest's folder
    dd, ii = _flat(base, q, 5)
    assert np.array_equal(nb.indices, ii)  # continuous random data: no ties
    np.testing.assert_allclose(nb.distances, dd, atol=1e-4)
    assert np.array_equal(nb.indices[:60, 0], planted)  # global ids = shard offset + local id
    assert nb.shard_rows == SIZES and nb.distances.shape == (120, 5)
    assert (np.diff(nb.distances, axis=1) >= 0).all()


def test_k_larger_than_a_shard_and_cosine(vector_shards):
    d, base, q, _ = vector_shards
    specs = load_manifest(d / "manifest.json")
    assert [s.path for s in specs] == [os.path.abspath(d / f"part{j}.npy") for j in range(4)]  # absolute for workers
    nb = sharded_knn(q, specs, k=200, block_rows=50)  # k > 37 and > 3 rows: those shards give all their rows
    dd, ii = _flat(base, q, 200)
    assert (nb.indices == ii).mean() > 0.999  # far down the list float ties may swap neighbours
    np.testing.assert_allclose(nb.distances, dd, atol=1e-4)
    nbc = sharded_knn(q, specs, k=4, metric="cosine")
    qn, bn = q / np.linalg.norm(q, axis=1, keepdims=True), base / np.linalg.norm(base, axis=1, keepdims=True)
    ref = np.argsort(-(qn @ bn.T), axis=1, kind="stable")[:, :4]
    assert np.array_equal(nbc.indices, ref)
    np.testing.assert_allclose(nbc.distances, 1 - np.take_along_axis(qn @ bn.T, ref, 1), atol=1e-5)


def test_merge_is_exact_and_ties_go_to_the_lower_global_id():
    rng = np.random.default_rng(3)
    d = np.sort(rng.random((50, 30)), axis=1)
    ids = np.stack([rng.permutation(1000)[:30] for _ in range(50)])
    parts = [(d[:, s : s + 10], ids[:, s : s + 10]) for s in (0, 10, 20)]  # three shards' candidate lists
    md, mi = merge_topk(parts, 7)
    order = np.argsort(d, axis=1, kind="stable")[:, :7]
    assert np.array_equal(md, np.take_along_axis(d, order, 1)) and np.array_equal(mi, np.take_along_axis(ids, order, 1))
    # the same row held by two shards (duplicate training slices): equal distance, lower global id first
    td, ti = merge_topk([(np.array([[1.0, 2.0]]), np.array([[9, 4]])), (np.array([[1.0, 1.5]]), np.array([[3, 7]]))], 3)
    assert ti.tolist() == [[3, 9, 7]] and td.tolist() == [[1.0, 1.0, 1.5]]
    dup = synthetic_rows(5, 16, 0, 40)
    nb = sharded_knn(dup[:5], [{"kind": "synthetic", "seed": 5, "dim": 16, "rows": [0, 40]}] * 2, k=2)
    assert nb.indices.tolist() == [[j, 40 + j] for j in range(5)]  # each query ties with its copy in shard 2


def test_synthetic_rows_do_not_depend_on_the_sharding():
    whole = synthetic_rows(7, 32, 0, 1000)
    parts = np.concatenate([synthetic_rows(7, 32, a, b) for a, b in ((0, 3), (3, 300), (300, 1000))])
    assert np.array_equal(whole, parts) and not np.array_equal(whole, synthetic_rows(8, 32, 0, 1000))
    assert [s.rows for s in synthetic_shards(10, 3, dim=4)] == [(0, 3), (3, 7), (7, 10)]
    q = whole[[5, 999, 256]] + 1e-3
    nb = sharded_knn(q, synthetic_shards(1000, 3, dim=32, seed=7), k=3)
    assert nb.indices[:, 0].tolist() == [5, 999, 256]
    assert np.array_equal(nb.indices, _flat(whole, q, 3)[1])


def test_image_shards_embed_in_the_worker(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.uniform(-1, 1, size=(90, 64, 64)).astype(np.float32)
    np.save(tmp_path / "a.npy", imgs[:50])
    (tmp_path / "ds").mkdir()
    np.save(tmp_path / "ds" / "images.npy", imgs)  # a prepared dataset folder: its images.npy
    q_img = imgs[[3, 70]] + 0.01
    fx = PixelFeatures(size=32)
    q = fx.transform_images(q_img)
    specs = [
        {"kind": "images", "path": str(tmp_path / "a.npy"), "space": "pixel", "space_params": {"size": 32}},
        {"kind": "images", "path": str(tmp_path / "ds"), "rows": [50, 90], "space_params": {"size": 32}},
    ]
    nb = sharded_knn(q, specs, k=3)
    dd, ii = _flat(fx.transform_images(imgs), q, 3)
    assert np.array_equal(nb.indices, ii) and nb.indices[:, 0].tolist() == [3, 70]
    np.testing.assert_allclose(nb.distances, dd, atol=1e-4)


def test_bad_specs_name_the_shard_or_file(tmp_path, vector_shards):
    d, _, q, _ = vector_shards
    ok = {"kind": "vectors", "path": str(d / "part0.npy")}
    cases = [
        ({"kind": "parquet", "path": "x"}, UsageError, "shard 1: kind must be one of"),
        ({"kind": "vectors"}, UsageError, "shard 1: a vectors shard needs a path"),
        ({"kind": "synthetic", "dim": 24}, UsageError, "needs rows"),
        ({**ok, "rows": [5, 2]}, UsageError, "0 <= start < stop"),
        ({**ok, "colour": 1}, UsageError, "unknown shard field"),
        ({"kind": "images", "path": "x.npy", "space": "domain"}, UsageError, "'domain' is learned"),
        ({"kind": "vectors", "path": str(tmp_path / "nope.npy")}, DataError, "nope.npy not found"),
        ({**ok, "rows": [0, 38]}, DataError, "part0.npy has 37 rows"),
        ({"kind": "images", "path": str(d / "part1.npy")}, DataError, r"part1.npy has shape \[3, 24\], expected"),
        ({"kind": "synthetic", "dim": 8, "rows": [0, 10]}, UsageError, "holds 8-d vectors but the queries are 24-d"),
    ]
    for spec, err, msg in cases:
        with pytest.raises(err, match=msg):
            sharded_knn(q, [ok, spec], k=2)
    assert UsageError("x").exit_code == 2 and DataError("x").exit_code == 4
    with pytest.raises(UsageError, match="only 40 rows"):
        sharded_knn(q, [ok, {**ok, "path": str(d / "part1.npy")}], k=41)
    with pytest.raises(UsageError, match="backend must be one of"):
        sharded_knn(q, [ok], k=1, backend="spark")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="bad.json: unreadable shard manifest"):
        load_manifest(tmp_path / "bad.json")
    (tmp_path / "m.json").write_text(json.dumps([ok, {"kind": "vectors", "path": 3}]))
    with pytest.raises(UsageError, match=r"shard 1 of .*m.json: a vectors shard needs a path"):
        load_manifest(tmp_path / "m.json")
    with pytest.raises(UsageError, match="missing.json: shard manifest not found"):
        sharded_knn(q, str(tmp_path / "missing.json"), k=1)


def test_ray_missing_is_a_clear_error(monkeypatch, vector_shards):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install cmraudit\[ray\]"):
        sharded_knn(vector_shards[2], [ShardSpec("synthetic", rows=(0, 10), dim=24)], k=1, backend="ray")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the ray backend needs Ray (pip install cmraudit[ray])")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_ray_backend_equals_local(ray_cluster, vector_shards, tmp_path):
    d, base, q, planted = vector_shards
    local = sharded_knn(q, d / "manifest.json", k=50)
    nb = sharded_knn(q, d / "manifest.json", k=50, backend="ray", block_rows=20)  # 4 actors on 2 CPUs, 6 blocks
    assert np.array_equal(nb.indices, local.indices) and np.array_equal(nb.distances, local.distances)
    assert nb.shard_rows == SIZES and len(nb.worker_peak_rss_mb) == 4 and min(nb.worker_peak_rss_mb) > 10
    syn = synthetic_shards(3000, 3, dim=24, seed=2)
    qs = synthetic_rows(2, 24, 2990, 3000)
    assert np.array_equal(
        sharded_knn(qs, syn, k=3, backend="ray").indices, sharded_knn(qs, syn, k=3).indices
    ) and sharded_knn(qs, syn, k=1, backend="ray").indices[:, 0].tolist() == list(range(2990, 3000))
    with pytest.raises(DataError, match="gone.npy not found"):  # an error inside an actor keeps its class and text
        sharded_knn(q, [{"kind": "vectors", "path": str(tmp_path / "gone.npy")}], k=1, backend="ray")


def test_slurm_backend_via_submitit_local_equals_local(vector_shards, tmp_path):
    pytest.importorskip("submitit", reason="the slurm backend needs submitit (pip install cmraudit[slurm])")
    d, _, q, _ = vector_shards
    local = sharded_knn(q, d / "manifest.json", k=6)
    nb = sharded_knn(q, d / "manifest.json", k=6, backend="slurm", folder=tmp_path / "jobs", cluster="local",
                     threads=1, block_rows=50)
    assert np.array_equal(nb.indices, local.indices) and np.array_equal(nb.distances, local.distances)
    assert nb.shard_rows == SIZES and not list((tmp_path / "jobs").glob("queries-*.npy"))  # its query file removed
    with pytest.raises(UsageError, match="needs folder="):
        sharded_knn(q, d / "manifest.json", k=1, backend="slurm")


_PEAK = """
import sys
from cmraudit.features.sharded import ShardWorker
w = ShardWorker({"kind": "synthetic", "seed": 0, "dim": 512, "rows": [0, int(sys.argv[1])]}, threads=1)
print(w.info()["peak_rss_mb"])
"""


def test_worker_memory_is_its_index_plus_a_constant():
    """Peak RSS of a fresh worker process grows by the index size, not more. The storage is reserved once: grown
    block by block (capacity doubling), the copy at 136k rows × 512-d (278 MB) would hold the old 256 MB and the new
    storage at once, about 520 MB."""
    import subprocess
    from pathlib import Path

    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    peak = {n: float(subprocess.run([sys.executable, "-c", _PEAK, str(n)], env=env, check=True, capture_output=True,
                                    text=True).stdout.split()[-1]) for n in (20_000, 136_000)}
    index_mb = (136_000 - 20_000) * 512 * 4 / 2**20  # 227 MB more index
    assert 0.9 < (peak[136_000] - peak[20_000]) / index_mb < 1.15, peak
    assert peak[20_000] - 20_000 * 512 * 4 / 2**20 < 250  # the constant: interpreter, numpy, FAISS, one block
