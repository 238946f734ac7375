"""Found in review (session 21): what `sample` claims about the slices it draws for given masks."""
from __future__ import annotations

import numpy as np
import pytest

from cmraudit.data.dataset import read_dataset, write_dataset

from .conftest import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sample_for_masks_keeps_their_partial_labels(assets, tmp_path, capsys):
    """Slices drawn for the masks of a partially labelled set (e.g. Sunnybrook: LV only, or MYO and LV) were all
    written as annotated RV;MYO;LV, so the fidelity mask checks counted the unlabelled structures as missing."""
    ds = read_dataset(assets["ph"])
    ds.annotated = np.where(np.arange(len(ds)) % 2 == 0, 4, 6).astype(np.uint8)  # LV; MYO + LV
    write_dataset(ds, tmp_path / "partial")
    rc, _, err = cli(["sample", "--model", str(assets["model"]), "--masks", str(tmp_path / "partial"), "--out",
                      str(tmp_path / "syn")], capsys)
    assert rc == 0, err
    syn = read_dataset(tmp_path / "syn")
    assert np.array_equal(syn.annotated, ds.annotated)


def test_an_empty_dataset_is_described_not_crashed_on(assets, tmp_path, capsys):
    """`data info --verify` on a dataset of 0 slices crashed (exit 5, in the fingerprint); `data export` wrote a
    folder its own re-import command refused."""
    ds = read_dataset(assets["ph"])
    write_dataset(ds.subset(np.array([], dtype=int)), tmp_path / "empty")
    rc, out, err = cli(["data", "info", "--verify", str(tmp_path / "empty")], capsys)
    assert rc == 0 and "internal error" not in err, err
    rc, _, err = cli(["data", "export", str(tmp_path / "empty"), "--format", "png", "--out", str(tmp_path / "ex")],
                     capsys)
    assert rc == 4 and "no slices" in err and not (tmp_path / "ex").exists(), err


def test_sample_overwrite_never_replaces_a_users_png_or_writes_beside_their_files(assets, tmp_path, capsys):
    """`sample --overwrite` replaced a user's OUT.png and wrote new volumes beside a user's notes in OUT_nifti/."""
    out = tmp_path / "syn"
    argv = ["sample", "--model", str(assets["model"]), "--n", "4", "--out", str(out)]
    assert cli(argv, capsys)[0] == 0
    assert cli([*argv, "--overwrite"], capsys)[0] == 0  # its own outputs: replaced
    png, nifti = tmp_path / "syn.png", tmp_path / "syn_nifti"
    png.write_text("my holiday photo")
    rc, _, err = cli([*argv, "--overwrite"], capsys)
    assert rc == 4 and str(png) in err and png.read_text() == "my holiday photo", err
    png.unlink()
    (nifti / "notes.txt").write_text("notes")
    before = {p.name: p.stat().st_mtime_ns for p in nifti.iterdir()}
    rc, _, err = cli([*argv, "--overwrite"], capsys)
    assert rc == 2 and "notes.txt" in err and not png.exists(), err
    assert {p.name: p.stat().st_mtime_ns for p in nifti.iterdir()} == before


@pytest.mark.parametrize("gen", ["noise", "copycat"])
def test_builtin_reference_generators_write_marked_models_that_know_their_size(gen, assets, tmp_path, capsys):
    """The noise / copycat / holdout models were written without a marker (so `fit --overwrite` refused its own
    output) and, sampled for masks of another size, failed with an empty AssertionError (exit 3)."""
    model = tmp_path / "m"
    argv = ["fit", "-g", gen, "--preset", "micro", "--data", str(assets["ph"]), "--out", str(model)]
    assert cli(argv, capsys)[0] == 0 and (model / ".cmraudit-output").is_file()
    assert cli([*argv, "--overwrite"], capsys)[0] == 0
    assert cli(["data", "phantom", "--out", str(tmp_path / "ph16"), "--subjects", "4", "--size", "16", "--slices",
                "2"], capsys)[0] == 0
    rc, _, err = cli(["sample", "--model", str(model), "--masks", str(tmp_path / "ph16"), "--out",
                      str(tmp_path / "s")], capsys)
    assert rc == 4 and "--masks" in err and "16×16" in err, err


@pytest.mark.parametrize("col, value", [("spacing_y_mm", "-5"), ("spacing_x_mm", "0"), ("spacing_y_mm", "inf"),
                                        ("spacing_x_mm", "nan"), ("patient_id", "")])
def test_index_csv_values_that_cannot_be_are_refused(assets, tmp_path, capsys, col, value):
    """`data info --verify` ("checks every value") and `fit` accepted a spacing of -5, 0, inf or nan and an empty
    patient id in index.csv; data info then printed a spacing range without the bad row."""
    import csv
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(assets["ph"], ds)
    rows = list(csv.DictReader(open(ds / "index.csv", newline="")))
    rows[1][col] = value
    with open(ds / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rc, _, err = cli(["data", "info", "--verify", str(ds)], capsys)
    assert rc == 4 and "index.csv" in err and "row 3" in err and col in err, err


def test_interrupted_sample_overwrite_keeps_all_three_old_outputs(assets, tmp_path, capsys, monkeypatch):
    """`sample --overwrite` interrupted after writing OUT and OUT_nifti left them new beside the old OUT.png, while the
    message said the output being replaced was kept as it was."""
    from cmraudit import standalone

    from .conftest import snapshot

    out = tmp_path / "syn"
    argv = ["sample", "--model", str(assets["model"]), "--n", "4", "--out", str(out)]
    assert cli(argv, capsys)[0] == 0
    before = snapshot(tmp_path)

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(standalone, "save_grid", interrupted)  # the last of the three
    rc, _, err = cli([*argv, "--overwrite", "--seed", "5"], capsys)
    assert rc == 130, err
    assert snapshot(tmp_path) == before  # nothing new, nothing left behind
    monkeypatch.undo()
    assert cli([*argv, "--overwrite", "--seed", "5"], capsys)[0] == 0 and snapshot(tmp_path) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn", "syn.png", "syn_nifti"]


def test_file_outputs_never_go_into_a_cmraudit_folder_holding_a_users_file(assets, tmp_path, capsys):
    """`card --out`, `report --out`, `gate --junit` and `compare --out` wrote into another run folder holding a user's
    notes.txt (and added themselves to its marker), although cmraudit never writes into such a folder."""
    import shutil

    from cmraudit.io_guard import record_entries

    other = tmp_path / "other"
    shutil.copytree(assets["run"], other)
    record_entries(other, "run")  # a finished run, its entries listed
    (other / "notes.txt").write_text("mine")
    marker, listing = (other / ".cmraudit-output").read_text(), sorted(p.name for p in other.iterdir())
    for argv in (["card", str(assets["run"]), "--out", str(other / "c.md")],
                 ["report", str(assets["run"]), "--out", str(other / "r.html")],
                 ["gate", str(assets["run"]), "--junit", str(other / "g.xml")]):
        rc, _, err = cli(argv, capsys)
        assert rc == 2 and "notes.txt" in err, (argv, err)
    assert sorted(p.name for p in other.iterdir()) == listing and (other / ".cmraudit-output").read_text() == marker
    rc, _, err = cli(["card", str(assets["run"]), "--out", str(tmp_path / "c.md")], capsys)
    assert rc == 0, err  # outside it, as ever
