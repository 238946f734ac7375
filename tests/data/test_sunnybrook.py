"""Real-data tests: the Sunnybrook subset (5 HF-I patients, 96 expert-contoured GE cine slices, CC0).

Figures asserted here were measured on the files (see docs/real-data.md) and checked against the
data README; the physiological ranges are stated beside each assert.
"""
import json

import numpy as np
import pytest

from cmraudit.cli.main import main
from cmraudit.data import STRUCTURE_BIT, read_dataset
from cmraudit.data.importers.dicom import import_sunnybrook
from cmraudit.data.preprocess import PreprocessConfig
from cmraudit.errors import EXIT_DATA

from .sunnybrook_data import SUNNYBROOK, requires_sunnybrook

pytestmark = [pytest.mark.realdata, requires_sunnybrook]

PATIENTS = ["SCD0000101", "SCD0000201", "SCD0000301", "SCD0000401", "SCD0000501"]
# SC-HF-I-6 (SCD0000501) ships 9 epicardial contours that are byte-identical copies of SC-HF-I-1's:
# they do not enclose that patient's endocardium (20-62 % of it outside), so the importer rejects them
# and leaves MYO unknown on those slices: 46 epicardia on file - 9 rejected = 37 MYO-annotated slices.
EPICARDIA_ON_FILE, EPICARDIA_REJECTED = 46, 9


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("sb") / "sunnybrook"
    summary = import_sunnybrook(SUNNYBROOK, out=out, config=PreprocessConfig(crop=128), progress=False)
    return summary, read_dataset(out, verify=True)


def _areas_mm2(ds, label):
    return (np.asarray(ds.masks) == label).sum(axis=(1, 2)) * ds.spacing_mm.prod(axis=1)


def test_counts_ids_vendor_spacing(imported):
    summary, ds = imported
    assert (summary.patients, summary.slices) == (5, 96)
    assert len(ds) == 96 and ds.shape == (128, 128)
    assert sorted(set(ds.patient_id)) == PATIENTS
    assert set(ds.vendor) == {"GE"} and set(ds.source) == {"sunnybrook"}
    # PixelSpacing from the headers: 1.2891 mm (SCD0000301) and 1.367188 / 1.3672 mm (the others)
    assert np.all((ds.spacing_mm >= 1.28) & (ds.spacing_mm <= 1.37))
    assert ds.spacing_mm.min() == pytest.approx(1.2891) and ds.spacing_mm.max() == pytest.approx(1.3672)
    np.testing.assert_allclose(ds.spacing_mm[ds.patient_id == "SCD0000301"], 1.2891)
    # 124 DICOMs on disk, 96 contoured: the 18 uncontoured cine frames of SCD0000101 (41-60 minus 48, 59) are ignored
    assert ds.meta["provenance"]["unlabelled_images_ignored"] == 18


def test_partial_labels_recorded(imported):
    summary, ds = imported
    assert ds.meta["annotated_structures"] == ["LV", "MYO"]
    assert ds.meta["unknown_structures"] == ["RV"] and "RV" in ds.meta["notes"]
    ann = ds.annotated.astype(int)
    assert np.all(ann & STRUCTURE_BIT["LV"])  # every contoured image has an endocardium
    assert not np.any(ann & STRUCTURE_BIT["RV"])  # RV never annotated
    has_myo = (ann & STRUCTURE_BIT["MYO"]) > 0
    assert has_myo.sum() == EPICARDIA_ON_FILE - EPICARDIA_REJECTED == 37
    mk = np.asarray(ds.masks)
    assert not np.any(mk == 1)  # no RV label anywhere
    assert np.all((mk == 3).any(axis=(1, 2)))
    # MYO pixels exactly on the MYO-annotated slices; elsewhere MYO is unknown, never labelled
    assert np.all((mk[has_myo] == 2).any(axis=(1, 2))) and not np.any(mk[~has_myo] == 2)
    # the rejected epicardia are the 9 of SC-HF-I-6, listed as counted skips
    assert len(summary.skipped) == EPICARDIA_REJECTED
    assert all("SC-HF-I-6/o-contours" in who and "MYO left unknown" in why for who, why in summary.skipped)
    assert not np.any(has_myo[ds.patient_id == "SCD0000501"])


def test_myo_ring_encloses_lv(imported):
    _, ds = imported
    mk = np.asarray(ds.masks)
    has_myo = (ds.annotated.astype(int) & STRUCTURE_BIT["MYO"]) > 0
    lv, bg = mk == 3, mk == 0
    touching = np.zeros_like(lv)
    for axis in (1, 2):
        for shift in (1, -1):
            touching |= lv & np.roll(bg, shift, axis=axis)
    frac = touching.sum(axis=(1, 2)) / lv.sum(axis=(1, 2))
    # where the epicardium is drawn, the cavity borders background on < 5 % of its pixels (measured max 1.4 %)
    assert frac[has_myo].max() < 0.05


def test_areas_physiological(imported):
    _, ds = imported
    lv = _areas_mm2(ds, 3)
    # short-axis LV cavity: ~1 cm² at an end-systolic apex up to ~60 cm² at the base of a dilated
    # heart-failure ventricle; measured 155-4142 mm², median 2207 mm²
    assert lv.min() >= 50 and lv.max() <= 6000
    assert 1000 <= np.median(lv) <= 3500
    myo = _areas_mm2(ds, 2)[(ds.annotated.astype(int) & STRUCTURE_BIT["MYO"]) > 0]
    # LV wall cross-section (~8-12 mm thick ring): measured 509-2215 mm²
    assert myo.min() >= 300 and myo.max() <= 4000


def test_ordering_and_cardiac_phase(imported):
    """Two contoured phases per slice location; diastole (later phase) has the larger cavity."""
    _, ds = imported
    lv = _areas_mm2(ds, 3)
    # phases from TriggerTime / (NominalInterval / CardiacNumberOfImages), equal to (InstanceNumber-1) mod 20
    expected_phases = {
        "SCD0000101": {7, 18},
        "SCD0000201": {6, 19},
        "SCD0000301": {6, 19},
        "SCD0000401": {6, 19},
        "SCD0000501": {8, 18},
    }
    for pid in PATIENTS:
        sel = ds.patient_id == pid
        assert set(ds.frame[sel].astype(int)) == expected_phases[pid]
        locs = sorted(set(ds.slice_index[sel]))
        assert locs == list(range(len(locs)))  # ranks of SliceLocation, no gaps
        ed_phase = max(expected_phases[pid])
        ed = lv[sel & (ds.frame == str(ed_phase))].sum()
        es = lv[sel & (ds.frame == str(min(expected_phases[pid])))].sum()
        for z in locs:
            assert (sel & (ds.slice_index == z)).sum() == 2
        # area-based ejection-fraction proxy: reduced in these heart-failure patients (measured 0.22-0.33)
        assert 0.10 < 1 - es / ed < 0.60


def test_lv_bright_myo_dark(imported):
    _, ds = imported
    im, mk = np.asarray(ds.images), np.asarray(ds.masks)
    has_myo = np.flatnonzero((ds.annotated.astype(int) & STRUCTURE_BIT["MYO"]) > 0)
    # SSFP: blood pool brighter than myocardium on every slice (measured difference >= 0.23, median 0.51)
    diff = [im[i][mk[i] == 3].mean() - im[i][mk[i] == 2].mean() for i in has_myo]
    assert min(diff) > 0.1 and np.median(diff) > 0.3
    # crop centred on the mask centroid
    for i in range(0, len(ds), 7):
        rr, cc = np.nonzero(mk[i])
        assert abs(rr.mean() - 63.5) < 2 and abs(cc.mean() - 63.5) < 2


def test_cli_import_then_info(tmp_path, capsys):
    out = tmp_path / "X"
    assert main(["-q", "data", "import", "sunnybrook", str(SUNNYBROOK), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "imported 5 patients, 96 slices" in printed and "skipped (9)" in printed
    assert main(["data", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["patients"], info["slices"]) == (5, 96)
    assert info["annotated_structures"] == ["MYO", "LV"] and info["vendors"] == ["GE"]
    assert info["spacing_mm"] == pytest.approx([1.2891, 1.3672])
    assert main(["data", "info", str(out)]) == 0
    table = capsys.readouterr().out
    assert "MYO+LV" in table and "(others unknown)" in table and "mm" in table
    # a second import without --overwrite is refused, the first one stays intact
    assert main(["-q", "data", "import", "sunnybrook", str(SUNNYBROOK), "--out", str(out)]) == EXIT_DATA
    assert "already exists" in capsys.readouterr().err
    assert len(read_dataset(out)) == 96


def test_cli_strict_names_the_bad_contour(tmp_path, capsys):
    out = tmp_path / "X"
    rc = main(["-q", "data", "import", "sunnybrook", str(SUNNYBROOK), "--out", str(out), "--strict"])
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_DATA and len(err.splitlines()) == 1
    assert "SC-HF-I-6/o-contours/IM-0001-0059-ocontour-manual.txt" in err and "outside this epicardium" in err
    assert not out.exists() and not any(p.name.startswith(".X.tmp-") for p in tmp_path.iterdir())
