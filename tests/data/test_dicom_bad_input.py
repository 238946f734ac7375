"""Bad DICOM / contour input, built in tmp_path from a few real Sunnybrook files.

Each kind gives one clear line naming the file and exit code 4 with ``--strict``, or a counted skip
without it; nothing is ever half-written. Also: the generic ``import dicom`` reproduces the
Sunnybrook import from the same files (contours with a link file, and per-image label masks).
"""
import csv
import shutil

import numpy as np
import pytest

from cmraudit.cli.main import main
from cmraudit.data import STRUCTURE_BIT, read_dataset
from cmraudit.data.importers.dicom import import_dicom, import_sunnybrook
from cmraudit.data.preprocess import PreprocessConfig
from cmraudit.errors import EXIT_DATA, DataError

from .sunnybrook_data import SUNNYBROOK, requires_sunnybrook

pytestmark = [pytest.mark.realdata, requires_sunnybrook]
CFG = PreprocessConfig(crop=96, size=32)
# two patients: SCD0000201 (SC-HF-I-2) and SCD0000401 (SC-HF-I-5), 18 contoured images each, 9 with an epicardium
LINK = {"SCD0000201": "SC-HF-I-2", "SCD0000401": "SC-HF-I-5"}


def _mini(tmp_path):
    root = tmp_path / "sb"
    with open(root.parent / "link.tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", "original_id"])
        w.writerows(LINK.items())
    for pid, orig in LINK.items():
        shutil.copytree(SUNNYBROOK / "dicoms" / pid, root / "dicoms" / pid)
        shutil.copytree(SUNNYBROOK / "contourfiles" / orig, root / "contourfiles" / orig)
    (root.parent / "link.tmp").rename(root / "link.csv")
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # the shared copy is read-only
    return root


def _icontour(root, n, orig="SC-HF-I-2"):
    return root / "contourfiles" / orig / "i-contours" / f"IM-0001-{n:04d}-icontour-manual.txt"


def _ocontour(root, n, orig="SC-HF-I-2"):
    return root / "contourfiles" / orig / "o-contours" / f"IM-0001-{n:04d}-ocontour-manual.txt"


def _strict_cli(root, out, capsys):
    rc = main(
        ["-q", "data", "import", "sunnybrook", str(root), "--out", str(out), "--crop", "96", "--size", "32", "--strict"]
    )
    return rc, capsys.readouterr().err.strip()


def _nothing_written(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")]


def _lenient(root, out):
    s = import_sunnybrook(root, out=out, config=CFG, progress=False)
    return s, read_dataset(out)


@pytest.fixture
def mini(tmp_path):
    return _mini(tmp_path)


def test_mini_baseline(mini, tmp_path):
    s, ds = _lenient(mini, tmp_path / "ok")
    assert (s.patients, s.slices, s.skipped) == (2, 36, [])
    assert int(((ds.annotated.astype(int) & STRUCTURE_BIT["MYO"]) > 0).sum()) == 18
    np.testing.assert_allclose(ds.spacing_mm, 1.367188 * 96 / 32, rtol=1e-5)  # resize scales the spacing


@pytest.mark.parametrize("kind", ["truncated", "no_pixels", "garbage"])
def test_bad_dicom(mini, tmp_path, capsys, kind):
    bad = mini / "dicoms" / "SCD0000201" / "47.dcm"
    if kind == "truncated":
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
        expect = "unreadable pixel data"
    elif kind == "no_pixels":
        import pydicom

        d = pydicom.dcmread(bad)
        del d.PixelData
        d.save_as(bad)
        expect = "no pixel data"
    else:
        bad.write_bytes(b"not a dicom file" * 8)
        expect = "not a readable DICOM"
    rc, err = _strict_cli(mini, tmp_path / "out", capsys)
    assert rc == EXIT_DATA and len(err.splitlines()) == 1 and str(bad) in err and expect in err
    _nothing_written(tmp_path / "out")
    s, ds = _lenient(mini, tmp_path / "out")
    assert s.slices == 35 and len(ds) == 35
    assert [who for who, _ in s.skipped] == [str(bad)]  # counted once (not again as an orphan contour)
    assert expect in s.skipped[0][1]


def test_endocardium_with_two_points(mini, tmp_path, capsys):
    bad = _icontour(mini, 47)
    bad.write_text("120.5 130.5\n121.0 131.0\n")
    rc, err = _strict_cli(mini, tmp_path / "out", capsys)
    assert rc == EXIT_DATA and len(err.splitlines()) == 1 and str(bad) in err and "at least 3" in err
    _nothing_written(tmp_path / "out")
    s, _ = _lenient(mini, tmp_path / "out")
    assert s.slices == 35 and [w for w, _ in s.skipped] == [str(bad)] and "2 point(s)" in s.skipped[0][1]


def test_epicardium_with_two_points_leaves_myo_unknown(mini, tmp_path, capsys):
    bad = _ocontour(mini, 60)
    bad.write_text("120.5 130.5\n121.0 131.0\n")
    rc, err = _strict_cli(mini, tmp_path / "out", capsys)
    assert rc == EXIT_DATA and str(bad) in err and "at least 3" in err
    s, ds = _lenient(mini, tmp_path / "out")
    assert s.slices == 36 and [w for w, _ in s.skipped] == [str(bad)]  # slice kept with LV only
    has_myo = (ds.annotated.astype(int) & STRUCTURE_BIT["MYO"]) > 0
    assert has_myo.sum() == 17
    assert not np.any(np.asarray(ds.masks)[~has_myo] == 2)


def test_contour_pointing_at_missing_image(mini, tmp_path, capsys):
    (mini / "dicoms" / "SCD0000201" / "47.dcm").unlink()
    orphan = _icontour(mini, 47)
    rc, err = _strict_cli(mini, tmp_path / "out", capsys)
    assert (
        rc == EXIT_DATA
        and len(err.splitlines()) == 1
        and str(orphan) in err
        and "no DICOM with InstanceNumber 47" in err
    )
    _nothing_written(tmp_path / "out")
    s, _ = _lenient(mini, tmp_path / "out")
    assert s.slices == 35 and [w for w, _ in s.skipped] == [str(orphan)]


def test_unparsable_contour_and_missing_patient_folder(mini, tmp_path):
    _icontour(mini, 47).write_text("120.5 abc\n1 2\n3 4\n")
    shutil.rmtree(mini / "dicoms" / "SCD0000401")
    s, ds = _lenient(mini, tmp_path / "out")
    assert (s.patients, s.slices) == (1, 17)
    whys = " | ".join(w for _, w in s.skipped)
    assert "line 1" in whys and "SCD0000401" in " ".join(w for w, _ in s.skipped)
    with pytest.raises(DataError, match="no usable patient"):
        shutil.rmtree(mini / "dicoms" / "SCD0000201")
        import_sunnybrook(mini, out=tmp_path / "none", config=CFG, progress=False)
    _nothing_written(tmp_path / "none")


def test_not_a_sunnybrook_folder(tmp_path, capsys):
    (tmp_path / "root").mkdir()
    rc = main(["-q", "data", "import", "sunnybrook", str(tmp_path / "root"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == EXIT_DATA and "not a Sunnybrook folder" in err and "link.csv" in err


def test_generic_dicom_import_matches_sunnybrook(mini, tmp_path):
    _, ref = _lenient(mini, tmp_path / "ref")
    # contours through the generic importer, folder names mapped by the link file
    s = import_dicom(mini / "dicoms", masks_from=mini / "contourfiles", link=mini / "link.csv", out=tmp_path / "gen",
                     config=CFG, progress=False)
    gen = read_dataset(tmp_path / "gen")
    assert (s.patients, s.slices) == (2, 36) and set(gen.source) == {"dicom"}
    np.testing.assert_array_equal(np.asarray(gen.masks), np.asarray(ref.masks))
    np.testing.assert_array_equal(np.asarray(gen.images), np.asarray(ref.images))
    np.testing.assert_array_equal(gen.annotated, ref.annotated)
    # per-image label masks (<InstanceNumber>.npy, Rows×Columns, ACDC numbering) rendered from the same contours
    from cmraudit.data.importers.contours import contours_to_mask, find_contours, read_contour

    for pid, orig in LINK.items():
        (tmp_path / "labels" / pid).mkdir(parents=True)
        for num, entry in find_contours(mini / "contourfiles" / orig).items():
            if "o" in entry:  # only fully annotated (LV + MYO) images
                m = contours_to_mask(read_contour(entry["i"]), read_contour(entry["o"]), (256, 256))
                np.save(tmp_path / "labels" / pid / f"{num}.npy", m)
    s = import_dicom(mini / "dicoms", masks_from=tmp_path / "labels", annotated=["LV", "MYO"], out=tmp_path / "lab",
                     config=CFG, progress=False)
    lab = read_dataset(tmp_path / "lab")
    full = (ref.annotated.astype(int) & STRUCTURE_BIT["MYO"]) > 0
    assert s.slices == 18 and lab.meta["annotated_structures"] == ["LV", "MYO"]
    np.testing.assert_array_equal(np.asarray(lab.masks), np.asarray(ref.masks)[full])
    # a label mask with the wrong shape is named
    np.save(tmp_path / "labels" / "SCD0000201" / "60.npy", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match=r"60\.npy: label mask shape"):
        import_dicom(
            mini / "dicoms",
            masks_from=tmp_path / "labels",
            out=tmp_path / "lab2",
            config=CFG,
            strict=True,
            progress=False,
        )
