"""``cmraudit neighbours``: sharded exact nearest training slices of synthetic slices, files and exit codes."""
from __future__ import annotations

import csv
import importlib.util
import json
import shutil

import numpy as np
import pytest

from cmraudit.cli.main import main
from cmraudit.data import write_dataset
from cmraudit.data.phantom import PhantomConfig, make_phantom
from cmraudit.features import PixelFeatures
from cmraudit.features.neighbours import knn


@pytest.fixture(scope="module")
def sharded_phantom(tmp_path_factory):
    """Phantom training slices in two prepared datasets (two sites) + a synthetic set holding 4 of them."""
    d = tmp_path_factory.mktemp("nbcli")
    ds = make_phantom(PhantomConfig(subjects=6, slices=3, size=32), seed=0)
    pids = ds.patients
    a, b = ds.select_patients(pids[:4]), ds.select_patients(pids[4:])
    write_dataset(a, d / "site_a")
    write_dataset(b, d / "site_b")
    shards = [{"kind": "images", "path": "site_a"}, {"kind": "images", "path": "site_b", "rows": [2, len(b)]}]
    (d / "shards.json").write_text(json.dumps({"shards": shards}))
    train_ds = type(ds).concat([a, b.subset(np.arange(2, len(b)))])
    planted = np.array([1, 7, len(a) + 3, len(train_ds) - 1])  # global ids (site_b rows counted from its row 2)
    write_dataset(train_ds.subset(planted), d / "syn")  # "synthetic" slices that are exact training copies
    return d, np.asarray(train_ds.images), planted


def test_neighbours_finds_planted_training_slices(sharded_phantom, capsys):
    d, train, planted = sharded_phantom
    syn = d / "syn"
    out = d / "out"
    assert main(["--quiet", "neighbours", "--shards", str(d / "shards.json"), "--synthetic", str(syn), "--out",
                 str(out), "--k", "3"]) == 0
    rows = list(csv.DictReader(open(out / "neighbours.csv")))
    assert [int(r["id_1"]) for r in rows] == planted.tolist()
    n_a = len(train) - 10  # site_b contributes its rows 2..11
    # shard and row *in the shard's file* of the nearest training slice
    assert [(int(r["shard"]), int(r["row"])) for r in rows] == [(0, 1), (0, 7), (1, 2 + 3), (1, 2 + 9)]
    assert planted[2] == n_a + 3
    assert all(float(r["distance_1"]) < 1e-5 and float(r["d1_over_d2"]) < 1e-3 for r in rows)
    ref = knn(PixelFeatures(size=32).transform_images(train[planted]), PixelFeatures(size=32).transform_images(train),
              k=3)
    got = np.array([[int(r[f"id_{j}"]) for j in (1, 2, 3)] for r in rows])
    assert np.array_equal(got, ref.indices)
    js = json.loads((out / "neighbours.json").read_text())
    assert js["training_rows"] == len(train) and js["queries"] == 4 and [s["rows"] for s in js["shards"]] == [n_a, 10]
    assert (out / ".cmraudit-output").is_file()
    # the same again: refused without --overwrite (exit 2), accepted with it
    args = ["neighbours", "--shards", str(d / "shards.json"), "--synthetic", str(syn), "--out", str(out)]
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    slurm = importlib.util.find_spec("submitit") is not None and shutil.which("sbatch") is None
    extra = ["--backend", "slurm"] if slurm else []  # submitit without Slurm: its jobs run as local processes
    assert main(args + ["--overwrite", "--k", "1"] + extra) == 0
    assert [int(r["id_1"]) for r in csv.DictReader(open(out / "neighbours.csv"))] == planted.tolist()
    assert (out / "submitit").is_dir() == slurm
    assert json.loads((out / "neighbours.json").read_text())["d1_over_d2"]["status"] == "skipped"
    # interrupted between its two files (here: the summary's write fails), an --overwrite rerun used to leave the new
    # neighbours.csv beside the old neighbours.json; now the old summary is gone and a plain rerun may finish it
    import cmraudit.cli.neighbours as nb_cli

    def stop(*a, **kw):
        raise KeyboardInterrupt

    real, nb_cli.write_json_atomic = nb_cli.write_json_atomic, stop
    try:
        with pytest.raises(KeyboardInterrupt):
            nb_cli.neighbours_cmd(shards=d / "shards.json", synthetic=syn, query_vectors=None, out=out, k=2,
                                  metric="l2", backend="local", address=None, cpus_per_shard=1, overwrite=True)
    finally:
        nb_cli.write_json_atomic = real
    assert not (out / "neighbours.json").exists()
    assert main(["--quiet", *args, "--k", "2"]) == 0 and json.loads((out / "neighbours.json").read_text())["k"] == 2


def test_neighbours_query_vectors_and_errors(sharded_phantom, tmp_path, capsys):
    d, train, planted = sharded_phantom
    feats = PixelFeatures(size=32).transform_images(train)
    np.save(tmp_path / "f.npy", feats)
    (tmp_path / "vec.json").write_text(json.dumps([{"kind": "vectors", "path": "f.npy", "rows": [0, 10]},
                                                   {"kind": "vectors", "path": "f.npy", "rows": [10, len(feats)]}]))
    np.save(tmp_path / "q.npy", feats[planted] + 1e-4)
    base = ["neighbours", "--shards", str(tmp_path / "vec.json")]
    assert main(base + ["--query-vectors", str(tmp_path / "q.npy"), "--out", str(tmp_path / "o")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "neighbours.csv")))
    assert [int(r["id_1"]) for r in rows] == planted.tolist()
    capsys.readouterr()
    # vector shards cannot embed --synthetic slices; both or neither query option; out inside an input; foreign dir
    assert main(base + ["--synthetic", str(d / "syn"), "--out", str(tmp_path / "o2")]) == 2
    assert "--query-vectors" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "o3")]) == 2
    assert "exactly one of --synthetic" in capsys.readouterr().err
    assert main(base + ["--query-vectors", str(tmp_path / "q.npy"), "--out", str(tmp_path / "f.npy")]) == 2
    assert "is the input shard" in capsys.readouterr().err and np.array_equal(np.load(tmp_path / "f.npy"), feats)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("mine")
    assert main(base + ["--query-vectors", str(tmp_path / "q.npy"), "--out", str(tmp_path / "foreign")]) == 2
    assert (tmp_path / "foreign" / "keep.txt").read_text() == "mine"
    assert len(list((tmp_path / "foreign").iterdir())) == 1
    np.save(tmp_path / "q8.npy", feats[:2, :8])
    assert main(base + ["--query-vectors", str(tmp_path / "q8.npy"), "--out", str(tmp_path / "o4")]) == 2
    assert "queries are 8-d" in capsys.readouterr().err and not (tmp_path / "o4").exists()
    assert main(base + ["--query-vectors", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "o5")]) == 4
    assert "nope.npy not found" in capsys.readouterr().err


def test_neighbours_refuses_empty_or_non_finite_query_vectors(sharded_phantom, tmp_path, capsys):
    _, train, _ = sharded_phantom
    feats = PixelFeatures(size=32).transform_images(train)
    np.save(tmp_path / "f.npy", feats)
    (tmp_path / "vec.json").write_text(json.dumps([{"kind": "vectors", "path": "f.npy"}]))
    base = ["neighbours", "--shards", str(tmp_path / "vec.json"), "--query-vectors"]
    q = feats[:4].copy()
    q[2, 5] = np.nan  # was: shard -1, row -301, distance 1.8e19, exit 0
    np.save(tmp_path / "nan.npy", q)
    capsys.readouterr()
    assert main(base + [str(tmp_path / "nan.npy"), "--out", str(tmp_path / "o")]) == 4
    err = capsys.readouterr().err
    assert "nan.npy" in err and "row 2" in err and not (tmp_path / "o").exists()
    np.save(tmp_path / "empty.npy", feats[:0])  # was: internal error (exit 5)
    assert main(base + [str(tmp_path / "empty.npy"), "--out", str(tmp_path / "o")]) == 4
    assert "no rows" in capsys.readouterr().err and not (tmp_path / "o").exists()
