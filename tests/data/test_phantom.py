"""The embedded phantom: determinism, format, anatomy invariants, vendor and subject separation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cmraudit.cli.main import main
from cmraudit.data import read_dataset
from cmraudit.data.phantom import PHANTOM_VERSION, PhantomConfig, make_phantom
from cmraudit.errors import UsageError

TINY = PhantomConfig(subjects=4, slices=4, size=48)
EIGHT = np.ones((3, 3), bool)


@pytest.fixture(scope="module")
def ds():
    return make_phantom(PhantomConfig(subjects=8, slices=5, size=64), seed=7)


def test_same_seed_same_arrays_different_seed_differs():
    a = make_phantom(TINY, seed=1)
    b = make_phantom(TINY, seed=1)
    c = make_phantom(TINY, seed=2)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert a.fingerprint() == b.fingerprint()
    assert np.abs(a.images - c.images).mean() > 0.05
    assert (a.masks != c.masks).mean() > 0.01


def test_subject_i_depends_only_on_seed_and_i():
    small = make_phantom(PhantomConfig(subjects=2, slices=4, size=48), seed=5)
    big = make_phantom(PhantomConfig(subjects=4, slices=4, size=48), seed=5)
    np.testing.assert_array_equal(small.images, big.images[: len(small)])
    np.testing.assert_array_equal(small.masks, big.masks[: len(small)])


def test_format_and_index(ds):
    cfg = PhantomConfig(subjects=8, slices=5, size=64)
    n = 8 * 5 * 2
    assert ds.images.shape == (n, 64, 64) and ds.images.dtype == np.float32
    assert ds.masks.shape == (n, 64, 64) and ds.masks.dtype == np.uint8
    assert ds.images.min() >= -1.0 and ds.images.max() <= 1.0
    assert ds.images.min() == -1.0 and ds.images.max() == 1.0  # per-slice normalisation spans the range
    assert set(np.unique(ds.masks)) == {0, 1, 2, 3}
    ds.check_values()
    assert list(ds.patients) == [f"phantom-{i:04d}" for i in range(1, 9)]
    assert set(ds.frame) == {"ED", "ES"}
    assert set(ds.source) == {"phantom"}
    np.testing.assert_allclose(ds.spacing_mm, cfg.fov_mm / 64)
    for pid in ds.patients:
        sel = ds.patient_id == pid
        assert len(set(ds.vendor[sel])) == 1  # one vendor per subject
        for fr in ("ED", "ES"):
            assert sorted(ds.slice_index[sel & (ds.frame == fr)]) == list(range(5))
    assert [ds.vendor[ds.patient_id == f"phantom-{i:04d}"][0] for i in range(1, 9)] == list("ABCDABCD")
    assert ds.meta["generator"] == "cmraudit.phantom"
    assert ds.meta["phantom_version"] == PHANTOM_VERSION
    assert ds.meta["seed"] == 7 and ds.meta["config"]["subjects"] == 8


def test_every_slice_has_closed_myo_ring_and_adjacent_rv(ds):
    for i in range(len(ds)):
        m = ds.masks[i]
        lv, myo, rv = m == 3, m == 2, m == 1
        assert lv.sum() > 0 and myo.sum() > 0 and rv.sum() > 0, f"slice {i}: a structure is missing"
        # MYO completely surrounds LV: every 8-neighbour of LV is LV or MYO (LV never touches bg or RV)
        ring = ndimage.binary_dilation(lv, EIGHT) & ~lv
        assert (m[ring] == 2).all(), f"slice {i}: LV touches label(s) {set(m[ring]) - {2}}"
        assert not lv[0].any() and not lv[-1].any() and not lv[:, 0].any() and not lv[:, -1].any()
        # RV sits beside the heart: it touches MYO
        assert (ndimage.binary_dilation(rv) & myo).any(), f"slice {i}: RV not adjacent to MYO"
        # one connected component per structure
        for lab in (1, 2, 3):
            assert ndimage.label(m == lab)[1] == 1, f"slice {i}: label {lab} is not one component"
        # the MYO ring is closed: LV is a hole of MYO (filling MYO's holes covers LV)
        assert ndimage.binary_fill_holes(myo)[lv].all(), f"slice {i}: MYO ring open"


def test_blood_bright_myocardium_dark_on_every_slice(ds):
    for i in range(len(ds)):
        im, m = ds.images[i], ds.masks[i]
        assert im[m == 3].mean() - im[m == 2].mean() > 0.3, f"slice {i}: LV/MYO contrast too low"
        assert im[m == 1].mean() - im[m == 2].mean() > 0.3, f"slice {i}: RV/MYO contrast too low"


def test_es_lv_smaller_than_ed(ds):
    area = (ds.masks == 3).sum(axis=(1, 2))
    for pid in ds.patients:
        for s in range(5):
            ed = area[(ds.patient_id == pid) & (ds.frame == "ED") & (ds.slice_index == s)]
            es = area[(ds.patient_id == pid) & (ds.frame == "ES") & (ds.slice_index == s)]
            assert es[0] < ed[0], f"{pid} slice {s}: ES LV area {es[0]} >= ED {ed[0]}"
    # base is larger than apex (taper)
    assert (
        area[(ds.frame == "ED") & (ds.slice_index == 0)].mean()
        > 2 * area[(ds.frame == "ED") & (ds.slice_index == 4)].mean()
    )


def test_vendors_differ_in_intensity_statistics():
    d = make_phantom(PhantomConfig(subjects=8, slices=3, size=48, vendors=("A", "D")), seed=0)
    stats = {}
    for v in ("A", "D"):
        sel = d.vendor == v
        im, m = d.images[sel], d.masks[sel]
        stats[v] = (im[m == 2].mean(), im[m == 0].std())
    assert abs(stats["A"][0] - stats["D"][0]) > 0.1, stats  # myocardium mean differs by > 0.1
    # within-vendor spread of per-subject myocardium means is smaller than the A-D gap
    per_subj = [d.images[d.patient_id == p][d.masks[d.patient_id == p] == 2].mean() for p in d.patients]
    a_means = per_subj[0::2]
    assert np.ptp(a_means) < abs(stats["A"][0] - stats["D"][0])


def test_subjects_differ_more_than_adjacent_slices_of_one_subject(ds):
    x = ds.images.reshape(len(ds), -1).astype(np.float64)
    within, between = [], []
    pids = list(ds.patients)
    for fr in ("ED", "ES"):
        for s in range(4):
            for a, pa in enumerate(pids):
                ia = np.flatnonzero((ds.patient_id == pa) & (ds.frame == fr) & (ds.slice_index == s))[0]
                ja = np.flatnonzero((ds.patient_id == pa) & (ds.frame == fr) & (ds.slice_index == s + 1))[0]
                within.append(np.linalg.norm(x[ia] - x[ja]))
                for pb in pids[a + 1 :]:
                    ib = np.flatnonzero((ds.patient_id == pb) & (ds.frame == fr) & (ds.slice_index == s))[0]
                    between.append(np.linalg.norm(x[ia] - x[ib]))
    assert np.mean(between) > 1.2 * np.mean(within), (np.mean(between), np.mean(within))
    # and nearest neighbour of each slice (other than itself) is a slice of the same subject
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    nn = d2.argmin(axis=1)
    assert (ds.patient_id[nn] == ds.patient_id).mean() > 0.9


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(subjects=0),
        dict(slices=0),
        dict(size=8),
        dict(vendors=("A", "Z")),
        dict(phases=("ED", "MID")),
        dict(fov_mm=0.0),
    ],
)
def test_bad_config_is_a_usage_error(kwargs):
    with pytest.raises(UsageError, match="PhantomConfig"):
        make_phantom(PhantomConfig(**kwargs), seed=0)


def test_single_phase_and_single_slice():
    d = make_phantom(PhantomConfig(subjects=2, slices=1, size=32, phases=("ES",)), seed=0)
    assert len(d) == 2 and set(d.frame) == {"ES"} and set(d.slice_index) == {0}
    assert all((d.masks[i] == k).any() for i in range(2) for k in (1, 2, 3))


def test_cli_writes_phantom(tmp_path, capsys):
    out = tmp_path / "ph"
    rc = main(["data", "phantom", "--out", str(out), "--subjects", "2", "--slices", "2", "--size", "32", "--seed", "3"])
    assert rc == 0, capsys.readouterr()
    back = read_dataset(out, verify=True)
    ref = make_phantom(PhantomConfig(subjects=2, slices=2, size=32), seed=3)
    np.testing.assert_array_equal(np.asarray(back.images), ref.images)
    assert back.meta["generator"] == "cmraudit.phantom" and back.meta["seed"] == 3
