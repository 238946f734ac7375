"""``data import images`` / ``data export``: round trips, the reference study's layout, readers, bad input."""

import json

import matplotlib
import numpy as np
import pytest
from PIL import Image

from cmraudit.cli.main import main
from cmraudit.data import Dataset, read_dataset, write_dataset
from cmraudit.data.export import export_dataset
from cmraudit.data.image_files import JET_PALETTE
from cmraudit.data.importers.images import import_images
from cmraudit.data.importers.nifti import MNMS_TO_ACDC
from cmraudit.data.preprocess import normalise_intensity
from cmraudit.errors import EXIT_DATA, EXIT_USAGE, UsageError

matplotlib.use("Agg")


def _prepared(path, shape, n=6, seed=0, masks=True):
    """A prepared dataset with random images in [-1, 1] and random label masks (3 patients)."""
    rng = np.random.default_rng(seed)
    ds = Dataset(
        images=rng.uniform(-1, 1, (n, *shape)).astype(np.float32),
        masks=(rng.integers(0, 4, (n, *shape)) if masks else np.zeros((n, *shape))).astype(np.uint8),
        patient_id=np.array([f"p{i // 2}" for i in range(n)], dtype=object),
        vendor=np.array(["A", "B"] * (n // 2), dtype=object),
        spacing_mm=np.tile([1.25, 1.5], (n, 1)),
        annotated=np.resize(np.array([7, 6, 4], np.uint8), n) * masks,  # partial labels, as Sunnybrook
    )
    ds.meta = {"has_masks": masks}
    return write_dataset(ds, path)


@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (128, 128), (48, 80)])
@pytest.mark.parametrize("fmt,bits,tol", [("png", 8, 1 / 255 + 1e-6), ("png", 16, 1e-4), ("nifti", 8, 1e-4)])
def test_round_trip_keeps_size_values_masks_and_ids(tmp_path, shape, fmt, bits, tol):
    src = _prepared(tmp_path / "src", shape)
    ex = export_dataset(src, out=tmp_path / "ex", format=fmt, bits=bits)
    meta = json.loads((tmp_path / "ex" / "export.json").read_text())
    import_images(
        tmp_path / "ex" / "images",
        masks=tmp_path / "ex" / "masks",
        ids=tmp_path / "ex" / "ids.csv",
        scale=meta["scale"],
        out=tmp_path / "back",
        progress=False,
    )
    a, b = read_dataset(src), read_dataset(tmp_path / "back")
    assert b.shape == shape and len(b) == len(a) == ex.slices
    err = np.abs(np.asarray(a.images) - np.asarray(b.images)).max()
    # 8-bit: half a quantisation step of 2/255 in [-1, 1] (stricter than the 2/255 asked for)
    assert err <= tol, err
    assert np.array_equal(np.asarray(a.masks), np.asarray(b.masks))
    assert list(a.patient_id) == list(b.patient_id) and list(a.vendor) == list(b.vendor)
    assert np.allclose(a.spacing_mm, b.spacing_mm) and np.array_equal(a.annotated, b.annotated)


def test_round_trip_through_the_cli_image_only(tmp_path, capsys):
    src = _prepared(tmp_path / "src", (40, 24), masks=False)
    assert (
        main(["-q", "data", "export", str(src), "--format", "png", "--bits", "16", "--out", str(tmp_path / "ex")]) == 0
    )
    assert not (tmp_path / "ex" / "masks").exists()
    assert (
        main(
            [
                "-q",
                "data",
                "import",
                "images",
                str(tmp_path / "ex" / "images"),
                "--ids",
                str(tmp_path / "ex" / "ids.csv"),
                "--scale",
                "range:0,65535",
                "--out",
                str(tmp_path / "back"),
            ]
        )
        == 0
    )
    b = read_dataset(tmp_path / "back")
    assert b.shape == (40, 24) and b.meta["has_masks"] is False and b.meta["annotated_structures"] == []
    assert (b.annotated == 0).all() and not np.asarray(b.masks).any()
    assert np.abs(np.asarray(read_dataset(src).images) - np.asarray(b.images)).max() <= 1e-4


def _reference_layout(root, n=4, size=128, seed=0):
    """The reference study's layout: grey 8-bit PNG images + jet colour-coded mask PNGs (M&Ms numbering) at 128²."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    truth = {}
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = rng.integers(40, 88, 2)
        r = np.hypot(yy - cy, xx - cx)
        m = np.zeros((size, size), np.uint8)
        m[r < 22] = 2  # MYO ring (M&Ms 2)
        m[r < 14] = 1  # LV (M&Ms 1)
        m[(np.hypot(yy - cy, xx - cx + 30) < 12) & (m == 0)] = 3  # RV (M&Ms 3)
        img = (rng.normal(90, 20, (size, size)) + 80 * (m == 1)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"sample_{i:03d}.png")
        plt.imsave(root / "masks" / f"sample_{i:03d}.png", m, cmap="jet", vmin=0, vmax=3)
        truth[f"gen{i:03d}"] = (img, m)
    return truth


def test_reference_layout_jet_masks_decode_to_the_right_class(tmp_path):
    truth = _reference_layout(tmp_path / "ref")
    s = import_images(
        tmp_path / "ref" / "images",
        masks=tmp_path / "ref" / "masks",
        mask_palette="jet",
        labels="mnms",
        id_pattern=r"sample_(?P<patient>\d+)",
        out=tmp_path / "ds",
        progress=False,
    )
    ds = read_dataset(tmp_path / "ds")
    assert s.slices == 4 and ds.shape == (128, 128) and ds.meta["has_masks"] is True
    for i, (img, m) in enumerate(truth.values()):
        assert np.array_equal(np.asarray(ds.masks[i]), MNMS_TO_ACDC[m])  # every pixel, stored in ACDC numbering
        assert np.allclose(ds.images[i], normalise_intensity(img.astype(np.float64), (1.0, 99.9)), atol=1e-6)
    assert list(ds.patient_id) == ["000", "001", "002", "003"]
    assert set(np.unique(ds.masks)) == {0, 1, 2, 3}


def test_jet_palette_is_matplotlib_jet():
    cmap = matplotlib.colormaps["jet"]
    for v, rgb in JET_PALETTE.items():
        assert np.allclose(np.array(cmap(v / 3)[:3]) * 255, rgb, atol=0.6)


def test_readers_rgb_rule_nifti_3d_npy_npz_and_resize(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(1)
    d = tmp_path / "in"
    d.mkdir()
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(d / "a.png")
    vol = rng.normal(size=(20, 30, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.9, 5, 1])), str(d / "b.nii.gz"))
    np.save(d / "c.npy", rng.normal(size=(2, 20, 30)))
    np.savez(d / "e.npz", images=rng.normal(size=(20, 30)))
    import_images(d, out=tmp_path / "ds", progress=False)
    ds = read_dataset(tmp_path / "ds")
    assert len(ds) == 1 + 3 + 2 + 1 and ds.shape == (20, 30)
    lum = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.allclose(ds.images[0], normalise_intensity(lum, (1.0, 99.9)), atol=1e-6)
    assert np.allclose(ds.images[2], normalise_intensity(vol[:, :, 1].astype(np.float64), (1.0, 99.9)), atol=1e-6)
    assert list(ds.patient_id) == ["a", "b", "b", "b", "c", "c", "e"] and list(ds.slice_index[1:4]) == [0, 1, 2]
    assert np.allclose(ds.spacing_mm[1], [0.8, 0.9]) and np.isnan(ds.spacing_mm[0]).all()
    import_images(d, out=tmp_path / "small", size="10x15", progress=False)
    sm = read_dataset(tmp_path / "small")
    assert sm.shape == (10, 15) and np.allclose(sm.spacing_mm[1], [1.6, 1.8])


# ------------------------------------------------------------------ bad input: exit 4, one line naming the file
def _bad(tmp_path, capsys, args, culprit):
    out = tmp_path / "out"
    rc = main(["-q", "data", "import", "images", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_DATA, err
    assert len(err.splitlines()) == 1 and str(culprit) in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
    return err


def _grey(path, shape=(16, 16), seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)).save(path)


def test_bad_mixed_sizes(tmp_path, capsys):
    (tmp_path / "i").mkdir()
    _grey(tmp_path / "i" / "a.png")
    _grey(tmp_path / "i" / "b.png", (16, 20))
    assert "--size" in _bad(tmp_path, capsys, [str(tmp_path / "i")], tmp_path / "i" / "b.png")


def test_bad_non_image_file_and_fake_png(tmp_path, capsys):
    (tmp_path / "i").mkdir()
    _grey(tmp_path / "i" / "a.png")
    (tmp_path / "i" / "notes.txt").write_text("hello")
    _bad(tmp_path, capsys, [str(tmp_path / "i")], tmp_path / "i" / "notes.txt")
    (tmp_path / "i" / "notes.txt").unlink()
    (tmp_path / "i" / "z.png").write_bytes(b"not a png at all")
    _bad(tmp_path, capsys, [str(tmp_path / "i")], tmp_path / "i" / "z.png")


def test_bad_mask_without_image_and_image_without_mask(tmp_path, capsys):
    for d in ("i", "m"):
        (tmp_path / d).mkdir()
    _grey(tmp_path / "i" / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "m" / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "m" / "b.png")
    _bad(tmp_path, capsys, [str(tmp_path / "i"), "--masks", str(tmp_path / "m")], tmp_path / "m" / "b.png")
    (tmp_path / "m" / "b.png").unlink()
    _grey(tmp_path / "i" / "c.png")
    _bad(tmp_path, capsys, [str(tmp_path / "i"), "--masks", str(tmp_path / "m")], tmp_path / "i" / "c.png")


def test_bad_colour_not_in_palette(tmp_path, capsys):
    _reference_layout(tmp_path / "ref", n=2, size=32)
    bad = tmp_path / "ref" / "masks" / "sample_001.png"
    rgb = np.asarray(Image.open(bad).convert("RGB")).copy()
    rgb[3, 3] = (0, 255, 0)  # pure green: far from every jet label colour
    Image.fromarray(rgb).save(bad)
    err = _bad(
        tmp_path,
        capsys,
        [str(tmp_path / "ref" / "images"), "--masks", str(tmp_path / "ref" / "masks"), "--mask-palette", "jet"],
        bad,
    )
    assert "[0, 255, 0]" in err


def test_bad_empty_folder_and_label_outside_map(tmp_path, capsys):
    (tmp_path / "i").mkdir()
    _bad(tmp_path, capsys, [str(tmp_path / "i")], tmp_path / "i")
    (tmp_path / "m").mkdir()
    _grey(tmp_path / "i" / "a.png")
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "m" / "a.png")
    _bad(tmp_path, capsys, [str(tmp_path / "i"), "--masks", str(tmp_path / "m")], tmp_path / "m" / "a.png")


def test_overwrite_never_replaces_a_foreign_folder(tmp_path, capsys):
    src = _prepared(tmp_path / "src", (16, 16))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user file")
    rc = main(["-q", "data", "export", str(src), "--format", "png", "--out", str(foreign), "--overwrite"])
    assert rc == EXIT_USAGE and (foreign / "keep.txt").read_text() == "user file"
    assert main(["-q", "data", "export", str(src), "--format", "png", "--out", str(tmp_path / "ex")]) == 0
    assert (
        main(["-q", "data", "export", str(src), "--format", "nifti", "--out", str(tmp_path / "ex"), "--overwrite"]) == 0
    )
    assert sorted(p.name for p in (tmp_path / "ex" / "images").iterdir())[0].endswith(".nii.gz")


def test_palette_json_custom_labels_and_ids_csv(tmp_path, capsys):
    rng = np.random.default_rng(3)
    for d in ("i", "m"):
        (tmp_path / d).mkdir()
    colours = {"0": [0, 0, 0], "10": [255, 0, 0], "20": [0, 255, 0]}
    (tmp_path / "pal.json").write_text(json.dumps(colours))
    truth = {}
    for name in ("x1", "x2"):
        _grey(tmp_path / "i" / f"{name}.png", (12, 18), seed=int(name[1]))
        lab = rng.choice([0, 10, 20], (12, 18))
        rgb = np.array([colours[str(v)] for v in lab.ravel()], np.uint8).reshape(12, 18, 3)
        rgb = np.clip(rgb.astype(int) + rng.integers(-5, 6, rgb.shape), 0, 255).astype(np.uint8)  # lossy colours
        Image.fromarray(rgb).save(tmp_path / "m" / f"{name}.png")
        truth[name] = lab
    (tmp_path / "ids.csv").write_text("file,patient_id,vendor\nx1.png,P7,B\nx2.png,P8,C\n")
    import_images(
        tmp_path / "i",
        masks=tmp_path / "m",
        mask_palette=str(tmp_path / "pal.json"),
        labels="0=bg,10=LV,20=MYO",
        ids=tmp_path / "ids.csv",
        out=tmp_path / "ds",
        progress=False,
    )
    ds = read_dataset(tmp_path / "ds")
    lut = {0: 0, 10: 3, 20: 2}
    for i, lab in enumerate(truth.values()):
        assert np.array_equal(np.asarray(ds.masks[i]), np.vectorize(lut.get)(lab))
    assert list(ds.patient_id) == ["P7", "P8"] and list(ds.vendor) == ["B", "C"]
    assert ds.meta["annotated_structures"] == ["MYO", "LV"]  # RV not in the map: unknown, not background
    (tmp_path / "ids.csv").write_text("file,patient_id\nx1.png,P7\n")
    _bad(tmp_path, capsys, [str(tmp_path / "i"), "--ids", str(tmp_path / "ids.csv")], tmp_path / "i" / "x2.png")
    _bad(tmp_path, capsys, [str(tmp_path / "i"), "--id-pattern", r"y(\d)"], tmp_path / "i" / "x1.png")
    # one file under two patients (the last row silently won), spacing that is not a number (exit 5)
    (tmp_path / "ids.csv").write_text("file,patient_id\nx1.png,P7\nx2.png,P8\nx1.png,OTHER\n")
    err = _bad(tmp_path, capsys, [str(tmp_path / "i"), "--ids", str(tmp_path / "ids.csv")], tmp_path / "ids.csv")
    assert "x1.png is listed twice" in err
    for sy in ("abc", "-1"):
        (tmp_path / "ids.csv").write_text(f"file,patient_id,spacing_y_mm,spacing_x_mm\nx1.png,P7,{sy},1\n"
                                          "x2.png,P8,1,1\n")
        err = _bad(tmp_path, capsys, [str(tmp_path / "i"), "--ids", str(tmp_path / "ids.csv")], tmp_path / "ids.csv")
        assert "spacing" in err and "'P7'" in err


def test_ids_pattern_labels_and_tolerance_that_would_have_been_misread(tmp_path, capsys):
    """Inputs that once imported without an error, each to a wrong dataset: a fractional slice_index became 0, an
    unmatched optional id group became the patient "None", a stored value given twice kept its last structure, and a
    NaN palette tolerance accepted every colour."""
    (tmp_path / "i").mkdir()
    _grey(tmp_path / "i" / "x1.png")
    (tmp_path / "ids.csv").write_text("file,patient_id,slice_index\nx1.png,P7,1.5\n")
    err = _bad(tmp_path, capsys, [str(tmp_path / "i"), "--ids", str(tmp_path / "ids.csv")], tmp_path / "i" / "x1.png")
    assert "'1.5'" in err and "ids.csv" in err
    err = _bad(tmp_path, capsys, [str(tmp_path / "i"), "--id-pattern", r"(?P<patient>zz)?x"], tmp_path / "i" / "x1.png")
    assert "patient" in err and "None" not in err  # the patient group took no part in the match
    for args, what in ((["--labels", "0=bg,1=LV,1=RV"], "given twice"),
                       (["--palette-tolerance", "nan"], "--palette-tolerance"),
                       (["--palette-tolerance", "-1"], "--palette-tolerance")):
        rc = main(["-q", "data", "import", "images", str(tmp_path / "i"), *args, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert rc == EXIT_USAGE and what in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "out").exists()


def test_scale_range_must_be_two_finite_numbers(capsys):
    from cmraudit.data.importers.images import Scaling

    assert (Scaling.parse("range:0,255").lo, Scaling.parse("range:0,255").hi) == (0.0, 255.0)
    for bad in ("range:.,5", "range:0,1e999", "range:5,1"):  # exit 5; every image constant -1; reversed
        with pytest.raises(UsageError, match="--scale"):
            Scaling.parse(bad)


def test_export_interrupted_leaves_nothing(tmp_path, monkeypatch):
    import cmraudit.data.export as export_mod

    src = _prepared(tmp_path / "src", (16, 16))
    calls = []

    def failing(path, arr, *, bits):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        Image.fromarray(np.asarray(arr, np.uint8)).save(path)

    monkeypatch.setattr(export_mod, "write_png", failing)
    with pytest.raises(OSError, match="disk full"):
        export_dataset(src, out=tmp_path / "ex", format="png")
    assert not (tmp_path / "ex").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".ex.tmp-")]


def test_data_info_says_image_only(tmp_path, capsys):
    src = _prepared(tmp_path / "src", (16, 16), masks=False)
    assert main(["data", "info", str(src)]) == 0
    assert "image-only" in capsys.readouterr().out
