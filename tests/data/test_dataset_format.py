import json

import numpy as np
import pytest

from cmraudit.data import ALL_STRUCTURES, Dataset, read_dataset, structures_to_bits, write_dataset
from cmraudit.errors import DataError


def _toy(n=6, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset(
        images=rng.uniform(-1, 1, (n, size, size)).astype(np.float32),
        masks=rng.integers(0, 4, (n, size, size)).astype(np.uint8),
        patient_id=np.array([f"p{i // 2}" for i in range(n)], dtype=object),
        vendor=np.array(["A", "A", "B", "B", "C", "C"][:n], dtype=object),
        annotated=np.array([ALL_STRUCTURES] * (n - 1) + [structures_to_bits(["LV"])], dtype=np.uint8),
        spacing_mm=np.full((n, 2), 1.25),
    )


def test_roundtrip_memmap_and_fingerprint(tmp_path):
    ds = _toy()
    write_dataset(ds, tmp_path / "d")
    back = read_dataset(tmp_path / "d", verify=True)
    assert isinstance(back.images, np.memmap)
    np.testing.assert_array_equal(back.images, ds.images)
    np.testing.assert_array_equal(back.masks, ds.masks)
    assert list(back.patient_id) == list(ds.patient_id)
    assert list(back.annotated) == list(ds.annotated)
    np.testing.assert_allclose(back.spacing_mm, 1.25)
    meta = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert meta["format_version"] == 1 and meta["fingerprint"] == ds.fingerprint()
    assert meta["fingerprint"].startswith("sha256:")


def test_fingerprint_changes_with_one_pixel():
    a, b = _toy(), _toy()
    b.images[3, 4, 4] += 1e-3
    assert a.fingerprint() != b.fingerprint()


def test_verify_detects_tampering(tmp_path):
    write_dataset(_toy(), tmp_path / "d")
    arr = np.load(tmp_path / "d" / "images.npy")
    arr[0, 0, 0] = 0.123
    np.save(tmp_path / "d" / "images.npy", arr)
    with pytest.raises(DataError, match="fingerprint mismatch"):
        read_dataset(tmp_path / "d", verify=True)


def test_unknown_format_version(tmp_path):
    write_dataset(_toy(), tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "dataset.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "d" / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="format_version 99"):
        read_dataset(tmp_path / "d")


def test_validate_collects_every_problem():
    with pytest.raises(DataError) as e:
        Dataset(images=np.zeros((2, 4, 4), np.float64), masks=np.zeros((2, 4, 5), np.int32), patient_id=["a", "b"])
    msg = str(e.value)
    assert "float32" in msg and "uint8" in msg and "shape" in msg


def test_overwrite_is_atomic(tmp_path):
    write_dataset(_toy(seed=0), tmp_path / "d")
    with pytest.raises(DataError, match="already exists"):
        write_dataset(_toy(seed=1), tmp_path / "d")
    write_dataset(_toy(seed=1), tmp_path / "d", overwrite=True)
    np.testing.assert_array_equal(read_dataset(tmp_path / "d").images, _toy(seed=1).images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_select_patients_and_summary():
    ds = _toy()
    sub = ds.select_patients(["p0", "p2"])
    assert len(sub) == 4 and set(sub.patient_id) == {"p0", "p2"}
    s = ds.summary()
    assert s["patients"] == 3 and s["vendors"] == ["A", "B", "C"] and s["labels"] == ["RV", "MYO", "LV"]
