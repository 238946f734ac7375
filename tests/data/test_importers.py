import numpy as np
import pytest

from cmraudit.cli.main import main
from cmraudit.data import read_dataset
from cmraudit.data.importers import import_acdc, import_folder, import_mnms
from cmraudit.data.preprocess import PreprocessConfig

from .nifti_fixtures import make_acdc, make_folder, make_mnms


def test_acdc_counts_crop_range(tmp_path):
    make_acdc(tmp_path / "acdc", n_patients=3)
    s = import_acdc(tmp_path / "acdc", out=tmp_path / "out", config=PreprocessConfig(crop=32), progress=False)
    ds = read_dataset(tmp_path / "out", verify=True)
    # 3 patients x 2 phases x 2 labelled slices (the third slice is unlabelled)
    assert (s.patients, s.slices) == (3, 12)
    assert len(ds) == 12 and ds.shape == (32, 32)
    assert ds.images.min() >= -1.0 and ds.images.max() <= 1.0
    assert ds.images.min() == pytest.approx(-1.0) and ds.images.max() == pytest.approx(1.0)
    assert set(np.unique(ds.masks)) == {0, 1, 2, 3}
    assert sorted(set(ds.frame)) == ["ED", "ES"]
    np.testing.assert_allclose(ds.spacing_mm, 1.5)
    # ACDC numbering kept: LV (3) is the bright blood pool
    im, mk = np.asarray(ds.images), np.asarray(ds.masks)
    assert im[mk == 3].mean() > im[mk == 2].mean() + 0.3
    # crop is centred on the mask centroid
    rr, cc = np.nonzero(mk[0])
    assert abs(rr.mean() - 15.5) < 2.5 and abs(cc.mean() - 15.5) < 2.5


def test_mnms_labels_remapped_to_acdc(tmp_path):
    root, csv_path = make_mnms(tmp_path / "mnms", n_patients=4)
    s = import_mnms(root, info=csv_path, out=tmp_path / "out", config=PreprocessConfig(crop=32), progress=False)
    ds = read_dataset(tmp_path / "out")
    assert (s.patients, s.slices) == (4, 16)
    im, mk = np.asarray(ds.images), np.asarray(ds.masks)
    # the fixture wrote M&Ms numbering (1 LV); after import LV must be 3 and bright, RV must be 1
    assert im[mk == 3].mean() > im[mk == 2].mean() + 0.3
    # the fixture's RV crescent lies on the low-column side of the LV
    for m in mk:
        assert np.nonzero(m == 1)[1].mean() < np.nonzero(m == 3)[1].mean() - 3
    assert sorted(set(ds.vendor)) == ["A", "B", "C", "D"]
    np.testing.assert_allclose(ds.spacing_mm, 1.2)


def test_resize_scales_spacing_and_keeps_labels(tmp_path):
    make_acdc(tmp_path / "acdc", n_patients=3)
    import_acdc(tmp_path / "acdc", out=tmp_path / "out", config=PreprocessConfig(crop=32, size=16), progress=False)
    ds = read_dataset(tmp_path / "out")
    assert ds.shape == (16, 16)
    np.testing.assert_allclose(ds.spacing_mm, 3.0)
    assert set(np.unique(ds.masks)) <= {0, 1, 2, 3}


def test_folder_import_and_cli_info(tmp_path, capsys):
    make_folder(tmp_path / "f", n=3)
    import_folder(tmp_path / "f", out=tmp_path / "out", config=PreprocessConfig(crop=32), progress=False)
    assert main(["data", "info", str(tmp_path / "out"), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"patients": 3' in out and '"slices": 6' in out and "sha256:" in out


def test_cli_import_acdc(tmp_path, capsys):
    make_acdc(tmp_path / "acdc", n_patients=2)
    rc = main(["-q", "data", "import", "acdc", str(tmp_path / "acdc"), "--out", str(tmp_path / "o"), "--crop", "32"])
    assert rc == 0
    assert "imported 2 patients, 8 slices" in capsys.readouterr().out
