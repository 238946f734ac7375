"""One test per bad-input kind: one clear line naming the file, exit code 4, nothing half-written."""
import gzip
import shutil

import numpy as np
import pytest

from cmraudit.cli.main import main
from cmraudit.data import read_dataset
from cmraudit.errors import EXIT_DATA, EXIT_USAGE

from .nifti_fixtures import make_acdc, make_folder, make_mnms, save_nii, volume


def _run(args, capsys):
    rc = main(["-q", *args])
    err = capsys.readouterr().err.strip()
    return rc, err


def _nothing_written(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")]


def _import_acdc(tmp_path, capsys, *extra):
    out = tmp_path / "out"
    rc, err = _run(
        ["data", "import", "acdc", str(tmp_path / "acdc"), "--out", str(out), "--crop", "32", *extra], capsys
    )
    return rc, err, out


def test_corrupt_nifti(tmp_path, capsys):
    make_acdc(tmp_path / "acdc", n_patients=1)
    bad = tmp_path / "acdc" / "patient001" / "patient001_frame01.nii.gz"
    bad.write_bytes(gzip.compress(b"this is not a nifti file at all" * 10))
    rc, err, out = _import_acdc(tmp_path, capsys, "--strict")
    assert rc == EXIT_DATA
    assert str(bad) in err and "not a readable NIfTI" in err and len(err.splitlines()) == 1
    _nothing_written(out)


def test_non_nifti_file_truncated(tmp_path, capsys):
    make_acdc(tmp_path / "acdc", n_patients=1)
    bad = tmp_path / "acdc" / "patient001" / "patient001_frame04_gt.nii.gz"
    bad.write_bytes(bad.read_bytes()[:40])
    rc, err, out = _import_acdc(tmp_path, capsys, "--strict")
    assert rc == EXIT_DATA and str(bad) in err
    _nothing_written(out)


def test_image_mask_shape_mismatch(tmp_path, capsys):
    make_acdc(tmp_path / "acdc", n_patients=1)
    gt = tmp_path / "acdc" / "patient001" / "patient001_frame01_gt.nii.gz"
    save_nii(gt, np.zeros((30, 30, 3), np.uint8))
    rc, err, out = _import_acdc(tmp_path, capsys, "--strict")
    assert rc == EXIT_DATA and str(gt) in err and "shape" in err
    _nothing_written(out)


def test_labels_outside_range(tmp_path, capsys):
    make_acdc(tmp_path / "acdc", n_patients=1)
    gt = tmp_path / "acdc" / "patient001" / "patient001_frame01_gt.nii.gz"
    _, m = volume(np.random.default_rng(0))
    m[0, 0, 0] = 7
    save_nii(gt, m)
    rc, err, out = _import_acdc(tmp_path, capsys, "--strict")
    assert rc == EXIT_DATA and str(gt) in err and "labels outside 0..3" in err and "7" in err
    _nothing_written(out)


def test_nan_in_image(tmp_path, capsys):
    make_acdc(tmp_path / "acdc", n_patients=1)
    p = tmp_path / "acdc" / "patient001" / "patient001_frame04.nii.gz"
    img, _ = volume(np.random.default_rng(0))
    img[3, 3, 0] = np.nan
    save_nii(p, img)
    rc, err, out = _import_acdc(tmp_path, capsys, "--strict")
    assert rc == EXIT_DATA and str(p) in err and "NaN or Inf" in err
    _nothing_written(out)


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "acdc").mkdir()
    rc, err, out = _import_acdc(tmp_path, capsys)
    assert rc == EXIT_DATA and str(tmp_path / "acdc") in err and "no ACDC patients found" in err
    _nothing_written(out)


def test_patient_without_labelled_frames(tmp_path, capsys):
    make_acdc(tmp_path / "acdc", n_patients=1)
    for fr in (1, 4):
        save_nii(
            tmp_path / "acdc" / "patient001" / f"patient001_frame{fr:02d}_gt.nii.gz", np.zeros((40, 48, 3), np.uint8)
        )
    rc, err, out = _import_acdc(tmp_path, capsys, "--strict")
    assert rc == EXIT_DATA and "patient001" in err and "no labelled slices" in err
    _nothing_written(out)


def test_duplicate_patient_ids(tmp_path, capsys):
    make_folder(tmp_path / "f" / "site1", n=2)
    make_folder(tmp_path / "f" / "site2", n=1, seed=1)  # case0 again
    out = tmp_path / "out"
    rc, err = _run(["data", "import", "folder", str(tmp_path / "f"), "--out", str(out), "--crop", "32"], capsys)
    assert rc == EXIT_DATA and "duplicate patient id 'case0'" in err and "site1" in err and "site2" in err
    _nothing_written(out)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage\x00", b"code,vendor\nA,B\n"])
def test_unreadable_csv(tmp_path, capsys, content):
    root, csv_path = make_mnms(tmp_path / "mnms", n_patients=1)
    csv_path.write_bytes(content)
    out = tmp_path / "out"
    rc, err = _run(
        ["data", "import", "mnms", str(root), "--info", str(csv_path), "--out", str(out), "--crop", "32"], capsys
    )
    assert rc == EXIT_DATA and str(csv_path) in err and "unreadable M&Ms information CSV" in err
    _nothing_written(out)


def test_mostly_good_dataset_skips_and_lists(tmp_path, capsys):
    make_acdc(tmp_path / "acdc", n_patients=4)
    bad = tmp_path / "acdc" / "patient002" / "patient002_frame01.nii.gz"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    rc = main(["-q", "data", "import", "acdc", str(tmp_path / "acdc"), "--out", str(out), "--crop", "32"])
    captured = capsys.readouterr().out
    assert rc == 0
    assert "imported 3 patients" in captured and "skipped (1)" in captured and "patient002" in captured
    ds = read_dataset(out)
    assert "patient002" not in set(ds.patient_id)
    assert ds.meta["provenance"]["skipped"][0][0].endswith("patient002")
    # --strict turns the same skip into an error and writes nothing
    rc, err, out2 = _import_acdc(tmp_path, capsys, "--strict", "--overwrite")
    assert rc == EXIT_DATA and str(bad) in err


def test_existing_output_is_not_clobbered(tmp_path, capsys):
    make_acdc(tmp_path / "acdc", n_patients=1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    rc, err, out = _import_acdc(tmp_path, capsys)
    # a directory cmraudit did not write is refused (exit 2, naming the option), with or without --overwrite
    assert rc == EXIT_USAGE and "--out" in err and "did not write" in err
    rc, err, out = _import_acdc(tmp_path, capsys, "--overwrite")
    assert rc == EXIT_USAGE and "did not write" in err
    assert (out / "keep.txt").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["acdc", "out"]
    # a second import over cmraudit's own output: "already exists" without --overwrite (exit 4), replaced with it
    (out / "keep.txt").unlink()
    out.rmdir()
    assert _import_acdc(tmp_path, capsys)[0] == 0
    rc, err, _ = _import_acdc(tmp_path, capsys)
    assert rc == EXIT_DATA and "already exists" in err and "--overwrite" in err
    assert _import_acdc(tmp_path, capsys, "--overwrite")[0] == 0


def test_read_dataset_errors(tmp_path, capsys):
    rc, err = _run(["data", "info", str(tmp_path / "nope")], capsys)
    assert rc == EXIT_DATA and str(tmp_path / "nope") in err
    shutil.copytree  # noqa: B018 - keep import used
