import numpy as np
import pytest

from cmraudit.data import Dataset, PatientSplit, SplitFractions, split_patients
from cmraudit.errors import UsageError


def _ds(n_patients=40, slices=3, vendors="ABCD"):
    n = n_patients * slices
    pid = np.array([f"p{i // slices:03d}" for i in range(n)], dtype=object)
    vendor = np.array([vendors[(i // slices) % len(vendors)] for i in range(n)], dtype=object)
    return Dataset(
        images=np.zeros((n, 2, 2), np.float32), masks=np.zeros((n, 2, 2), np.uint8), patient_id=pid, vendor=vendor
    )


@pytest.mark.parametrize("seed", range(25))
def test_no_patient_in_two_splits(seed):
    ds = _ds(n_patients=17 + seed)
    sp = split_patients(ds, seed=seed)
    sets = [set(sp.train), set(sp.holdout), set(sp.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sets[0] | sets[1] | sets[2] == {str(p) for p in ds.patients}
    parts = sp.apply(ds)
    assert sum(len(p) for p in parts.values()) == len(ds)
    for a in parts:
        for b in parts:
            if a != b:
                assert not set(parts[a].patient_id) & set(parts[b].patient_id)


def test_seeded_and_sized():
    ds = _ds(40)
    a, b, c = split_patients(ds, seed=1), split_patients(ds, seed=1), split_patients(ds, seed=2)
    assert a == b and a != c
    assert (len(a.train), len(a.holdout), len(a.test)) == (20, 10, 10)
    f = split_patients(ds, seed=0, fractions=SplitFractions(train=0.6, holdout=0.2, test=0.2))
    assert (len(f.train), len(f.holdout), len(f.test)) == (24, 8, 8)


def test_stratified_by_vendor():
    ds = _ds(40)
    sp = split_patients(ds, seed=3)
    vendor_of = {str(p): v for p, v in zip(ds.patient_id, ds.vendor)}
    for name in ("train", "holdout", "test"):
        counts = {v: sum(vendor_of[p] == v for p in sp[name]) for v in "ABCD"}
        expected = len(sp[name]) / 4
        assert all(abs(c - expected) <= 1 for c in counts.values()), (name, counts)


def test_save_load(tmp_path):
    sp = split_patients(_ds(12), seed=5)
    sp.save(tmp_path / "split.json")
    assert PatientSplit.load(tmp_path / "split.json") == sp


def test_bad_fractions():
    with pytest.raises(UsageError, match="sum to 1"):
        SplitFractions(train=0.9, holdout=0.2, test=0.1)
