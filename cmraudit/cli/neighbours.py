"""``cmraudit neighbours``: exact nearest training rows of synthetic slices over a sharded training set (issue 18).

The training set is described by a shard manifest (:mod:`cmraudit.features.shards`); each worker (this process one
shard after another, or one Ray actor per shard) loads and embeds its own shard, and the per-shard top-k are merged
exactly (:func:`cmraudit.features.sharded.sharded_knn`). Writes OUT/neighbours.csv (per query: global ids, the shard
and the row in that shard's file of the nearest training row, distances, d1/d2) and OUT/neighbours.json (summary).
Raw distances only: the calibrated copy verdict needs the holdout calibration of ``cmraudit audit``.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..data import read_dataset
from ..errors import DataError, UsageError
from ..features import make_features
from ..features.sharded import sharded_knn
from ..features.shards import ShardSpec, load_manifest, shard_blocks
from ..generators.checkpoint import write_json_atomic
from ..io_guard import atomic_file, check_output, make_output_dir, write_errors
from ..progress import make_console
from . import _state

console = make_console()


def _queries(synthetic: Optional[Path], query_vectors: Optional[Path], specs) -> np.ndarray:
    if (synthetic is None) == (query_vectors is None):
        raise UsageError("give exactly one of --synthetic (a prepared dataset) and --query-vectors (a .npy file)")
    if query_vectors is not None:
        spec = ShardSpec("vectors", path=str(query_vectors), name=f"--query-vectors {query_vectors}")
        blocks = list(shard_blocks(spec))
        q = np.concatenate(blocks) if blocks else np.empty((0, 0), np.float32)
        if len(q) == 0:
            raise DataError(f"--query-vectors {query_vectors}: no rows to search")
        bad = ~np.isfinite(q).all(axis=1)
        if bad.any():
            raise DataError(f"--query-vectors {query_vectors}: row {int(np.flatnonzero(bad)[0])} holds NaN or "
                            f"infinite values ({int(bad.sum())} such rows)")
        return q
    spaces = {(s.space, tuple(sorted(s.space_params.items()))) for s in specs if s.kind == "images"}
    if len(spaces) != 1 or any(s.kind != "images" for s in specs):
        raise UsageError(
            "--synthetic needs every shard to be an images shard of one feature space (its slices are embedded in "
            "that space); with vector or mixed shards pass --query-vectors in the shards' space"
        )
    space, params = spaces.pop()
    fx = make_features(space, **dict(params)).fit(None, seed=0)
    return fx.transform_images(np.asarray(read_dataset(synthetic).images, dtype=np.float32))


def neighbours_cmd(
    shards: Path = typer.Option(..., "--shards", help="JSON shard manifest (docs/sharded.md)."),
    out: Path = typer.Option(..., "--out", help="Directory for neighbours.csv and neighbours.json."),
    synthetic: Optional[Path] = typer.Option(
        None, "--synthetic", help="Prepared dataset of synthetic slices, embedded in the image shards' space."
    ),
    query_vectors: Optional[Path] = typer.Option(
        None, "--query-vectors", help="Query vectors [Q, D] (.npy) in the shards' space (instead of --synthetic)."
    ),
    k: int = typer.Option(2, "--k", min=1, max=4096, help="Neighbours per query."),
    metric: str = typer.Option("l2", "--metric", help="l2 (Euclidean) or cosine (1 - cos)."),
    backend: str = typer.Option(
        "local", "--backend", help="local (shards one after another), ray (one actor each) or slurm (one submitit "
        "job each; logs in OUT/submitit; Slurm when sbatch exists, else local processes)."
    ),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray cluster to join ('auto': the running one); default: start a local cluster."
    ),
    cpus_per_shard: Optional[float] = typer.Option(
        None, "--cpus-per-shard", min=0.01, help="CPUs each Ray actor reserves (default min(1, cluster CPUs/shards))."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace neighbours files this command wrote before."),
) -> None:
    """Exact k nearest training rows of each synthetic slice over sharded training data (local or Ray)."""
    specs = load_manifest(shards)
    inputs = [("--shards", shards), ("--synthetic", synthetic), ("--query-vectors", query_vectors)]
    inputs += [(f"shard {s.label()}", s.path) for s in specs if s.path]
    check_output(out, inputs=inputs, option="--out", produces="neighbours")
    if (out / "neighbours.json").exists() and not overwrite:
        raise UsageError(f"--out {out}: neighbours.json is already there; pass --overwrite or choose another --out")
    q = _queries(synthetic, query_vectors, specs)
    folder = None
    if backend == "slurm":  # the jobs' folder must exist before the search: it lives in OUT
        folder = make_output_dir(out, kind="neighbours") / "submitit"
    nb = sharded_knn(q, specs, k, metric=metric, backend=backend, address=address, cpus_per_shard=cpus_per_shard,
                     folder=folder)
    offsets = np.cumsum((0,) + nb.shard_rows)
    shard_of = np.searchsorted(offsets, nb.indices[:, 0], side="right") - 1
    first = np.array([s.rows[0] if s.rows else 0 for s in specs])  # file row of each shard's first row
    d1 = nb.distances[:, 0]
    ratio = d1 / np.maximum(nb.distances[:, 1], 1e-12) if k >= 2 else None
    make_output_dir(out, kind="neighbours")
    with write_errors(out / "neighbours.json"):  # neighbours.json, written last, marks a finished pair: an old one
        (out / "neighbours.json").unlink(missing_ok=True)  # goes first, never to describe a new neighbours.csv
    with atomic_file(out / "neighbours.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query", "shard", "row"] + [f"id_{j + 1}" for j in range(k)]
                   + [f"distance_{j + 1}" for j in range(k)] + (["d1_over_d2"] if ratio is not None else []))
        for r in range(len(q)):
            w.writerow([r, int(shard_of[r]), int(nb.indices[r, 0] - offsets[shard_of[r]] + first[shard_of[r]])]
                       + nb.indices[r].tolist() + [f"{x:.6g}" for x in nb.distances[r]]
                       + ([f"{ratio[r]:.6g}"] if ratio is not None else []))
    quant = lambda x: {p: float(np.quantile(x, v)) for p, v in (("min", 0), ("median", 0.5), ("max", 1))}  # noqa: E731
    summary = {
        "format": "cmraudit-neighbours",
        "k": k,
        "metric": metric,
        "backend": backend,
        "queries": int(len(q)),
        "training_rows": int(offsets[-1]),
        "shards": [{"shard": s.label(), "rows": n} for s, n in zip(specs, nb.shard_rows)],
        "nearest_distance": quant(d1),
        "d1_over_d2": quant(ratio) if ratio is not None else {"status": "skipped", "reason": "needs --k >= 2"},
        "seconds": round(nb.seconds, 3),
        "worker_peak_rss_mb": [round(x, 1) for x in nb.worker_peak_rss_mb],
    }
    write_json_atomic(out / "neighbours.json", summary)
    if not _state.QUIET:
        console.print(
            f"{len(q)} queries × {offsets[-1]} training rows in {len(specs)} shards ({backend}): nearest distance "
            f"median {summary['nearest_distance']['median']:.4g}, min {summary['nearest_distance']['min']:.4g}"
        )
    console.print(f"neighbours -> {out / 'neighbours.csv'}")


def register(app: typer.Typer) -> None:
    app.command("neighbours")(neighbours_cmd)
