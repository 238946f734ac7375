"""``cmraudit evaluate``: all three axes on an existing synthetic set; the report of ``run``, read by gate/compare."""

import json

import numpy as np
import pytest

from cmraudit.cli.main import main
from cmraudit.data import PhantomConfig, make_phantom, read_dataset, split_patients, write_dataset
from cmraudit.data.export import export_dataset
from cmraudit.data.importers.images import import_images
from cmraudit.errors import EXIT_DATA, EXIT_USAGE
from cmraudit.evaluation import EvaluateConfig, evaluate
from cmraudit.report.io import read_report

from .report.report_fixtures import make_run_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """The micro phantom (9 subjects at 32²) split by patient; an image-only copy of its test split."""
    root = tmp_path_factory.mktemp("ev")
    ds = make_phantom(PhantomConfig(subjects=9, size=32), seed=0, progress=False)
    for name, part in split_patients(ds, seed=0).apply(ds).items():
        write_dataset(part, root / name)
    export_dataset(root / "test", out=root / "test_png", format="png", bits=16)
    import_images(root / "test_png" / "images", out=root / "image_only", scale="range:0,65535", progress=False)
    return root


def _evaluate(root, synthetic, out, **kw):
    return evaluate(
        EvaluateConfig(
            train=str(root / "train"),
            holdout=str(root / "holdout"),
            synthetic=str(root / synthetic),
            out=str(out),
            seed=0,
            device="cpu",
            progress=False,
            utility_params={"iterations": 20},
            **kw,
        )
    )


@pytest.fixture(scope="module")
def reports(phantom):
    full = _evaluate(phantom, "test", phantom / "ev_full")
    image_only = _evaluate(phantom, "image_only", phantom / "ev_image_only", name="mygan")
    return full, image_only


def test_test_split_as_synthetic_gives_all_three_sections(reports):
    full, _ = reports
    rep = read_report(full.run_dir)  # validates against the report schema
    assert full.stage_status == {"privacy": "done", "fidelity": "done", "utility": "done"}
    for section in ("privacy", "fidelity", "utility"):
        assert rep[section].get("status") != "skipped"
    assert rep["utility"]["regimes"]["synthetic"]["mean_dice"]["unit"] == "patient"
    assert rep["fidelity"]["mask_plausibility"].get("status") != "skipped"
    assert rep["generator"]["external"] is True and rep["generator"]["dp"] is None
    assert rep["run"]["command"] == "cmraudit evaluate" and rep["data"]["reference"].startswith("holdout")
    assert (full.run_dir / "report.html").is_file() and (full.run_dir / "samples.png").is_file()
    assert read_dataset(full.run_dir / "synthetic").fingerprint() == rep["run"]["data_fingerprints"]["synthetic"]


def test_image_only_set_runs_privacy_and_fidelity_and_skips_utility(reports):
    full, image_only = reports
    rep, ref = read_report(image_only.run_dir), read_report(full.run_dir)
    assert rep["utility"]["status"] == "skipped" and "synthetic set has no masks" in rep["utility"]["reason"]
    assert rep["fidelity"]["mask_plausibility"]["status"] == "skipped"
    assert rep["fidelity"]["distribution"]["radiomic"]["status"] == "skipped"
    assert rep["privacy"]["masks"]["status"] == "skipped" and rep["generator"]["name"] == "mygan"
    # the same images (16-bit round trip) without masks: the image-based numbers agree with the full run
    for space in ("pixel", "domain"):
        a = rep["fidelity"]["distribution"][space]["frechet_distance"]["value"]
        b = ref["fidelity"]["distribution"][space]["frechet_distance"]["value"]
        assert a == pytest.approx(b, rel=1e-2, abs=1e-3), space
    cr = lambda r: r["privacy"]["feature_spaces"]["pixel"]["copy_detection"]["copy_rate"]["value"]  # noqa: E731
    assert cr(rep) == pytest.approx(cr(ref), abs=1 / 32 + 1e-9)


def test_gate_and_compare_read_both_reports_beside_a_run(reports, tmp_path, capsys):
    full, image_only = reports
    for run_dir in (full.run_dir, image_only.run_dir):
        assert main(["-q", "gate", str(run_dir)]) in (0, 1)  # a verdict, not a usage/schema error
    ours, _, _ = make_run_dir(tmp_path / "ddpm-run")
    assert (
        main(["-q", "compare", str(ours), str(full.run_dir), str(image_only.run_dir), "--out", str(tmp_path / "cmp")])
        == 0
    )
    rows = {r["run"]: r for r in json.loads((tmp_path / "cmp" / "compare.json").read_text())}
    assert len(rows) == 3
    by_gen = {r["generator"]: r for r in rows.values()}
    assert by_gen["test"]["dice_synthetic"] is not None and by_gen["mygan"]["dice_synthetic"] is None
    assert by_gen["mygan"]["frechet_distance"] is not None and by_gen["mygan"]["copy_rate_upper"] is not None


def test_bad_inputs(phantom, tmp_path, capsys):
    base = ["-q", "evaluate", "--train", str(phantom / "train"), "--synthetic", str(phantom / "test")]
    rc = main([*base, "--holdout", str(phantom / "train"), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_DATA and "share" in err and str(phantom / "train") in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()
    ds = read_dataset(phantom / "test")
    small = ds.subset(np.arange(len(ds)))
    small.images, small.masks = (
        np.asarray(small.images)[:, :16, :16].copy(),
        np.asarray(small.masks)[:, :16, :16].copy(),
    )
    write_dataset(small, tmp_path / "small")
    rc = main(
        [
            "-q",
            "evaluate",
            "--train",
            str(phantom / "train"),
            "--holdout",
            str(phantom / "holdout"),
            "--synthetic",
            str(tmp_path / "small"),
            "--out",
            str(tmp_path / "b"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_DATA and str(tmp_path / "small") in err and "16×16" in err
    rc = main(
        [
            "-q",
            "evaluate",
            "--train",
            str(phantom / "train"),
            "--holdout",
            str(phantom / "holdout"),
            "--synthetic",
            str(phantom / "test"),
            "--out",
            str(phantom / "test" / "report"),
        ]
    )
    assert rc == EXIT_USAGE and "--out" in capsys.readouterr().err


def test_image_only_sets_cannot_train_and_audit_skips_mask_copies(phantom, tmp_path, capsys):
    rc = main(["-q", "fit", "--generator", "ddpm", "--data", str(phantom / "image_only"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_DATA and str(phantom / "image_only") in err and "cmraudit evaluate" in err
    assert not (tmp_path / "m").exists()
    args = ["--train", str(phantom / "train"), "--holdout", str(phantom / "holdout")]
    assert main(["-q", "audit", *args, "--synthetic", str(phantom / "image_only"), "--out", str(tmp_path / "a")]) == 0
    assert read_report(tmp_path / "a")["privacy"]["masks"]["status"] == "skipped"


def test_test_and_paired_sets(phantom, tmp_path):
    test = read_dataset(phantom / "test")
    noisy = test.subset(np.arange(len(test)))
    rng = np.random.default_rng(0)
    noisy.images = np.clip(np.asarray(noisy.images) + rng.normal(0, 0.05, noisy.images.shape), -1, 1).astype(np.float32)
    noisy.source = np.full(len(noisy), "synthetic:noisy", dtype=object)
    write_dataset(noisy, tmp_path / "paired")
    res = _evaluate(phantom, "image_only", tmp_path / "ev", test=str(phantom / "test"), paired=str(tmp_path / "paired"))
    rep = read_report(res.run_dir)
    assert rep["data"]["reference"] == "test" and rep["data"]["test"]["patients"] == len(test.patients)
    ssim = rep["fidelity"]["paired"]["ssim"]["value"]
    assert 0.3 < ssim < 1.0  # images rendered from the test masks, not copies
    # the paired set is an input of the report too: fingerprinted (two different paired sets gave one fingerprint)
    assert rep["run"]["data_fingerprints"]["synthetic_paired"] == read_dataset(tmp_path / "paired").fingerprint()


def test_values_outside_the_prepared_format_and_non_square_slices_are_refused(phantom, tmp_path, capsys):
    """A NaN or 0–255 synthetic set ran to exit 0 with skipped or absurd sections (pixel FD 1.9e6); non-square slices
    ended in an internal error (exit 5) inside the registered copy search."""
    t = read_dataset(phantom / "test", mmap=False)
    nan = t.subset(np.arange(len(t)))
    im = np.asarray(nan.images).copy()
    im[0, 5, 5] = np.nan
    nan.images = im
    write_dataset(nan, tmp_path / "nan")
    wide = t.subset(np.arange(len(t)))
    wide.images = ((np.asarray(wide.images) + 1) * 127.5).astype(np.float32)
    write_dataset(wide, tmp_path / "u8")
    base = ["-q", "evaluate", "--train", str(phantom / "train"), "--holdout", str(phantom / "holdout")]
    for name, words in (("nan", "NaN"), ("u8", "outside [-1, 1]")):
        rc = main([*base, "--synthetic", str(tmp_path / name), "--out", str(tmp_path / f"o-{name}")])
        err = capsys.readouterr().err.strip()
        assert rc == EXIT_DATA and str(tmp_path / name) in err and words in err and len(err.splitlines()) == 1
        assert not (tmp_path / f"o-{name}").exists()
    for part in ("train", "holdout", "test"):
        d = read_dataset(phantom / part, mmap=False)
        d.images, d.masks = np.asarray(d.images)[:, :, :24].copy(), np.asarray(d.masks)[:, :, :24].copy()
        write_dataset(d, tmp_path / "rect" / part)
    r = tmp_path / "rect"
    for cmd in (["evaluate", "--test", str(r / "test")], ["audit"]):
        rc = main(["-q", *cmd, "--train", str(r / "train"), "--holdout", str(r / "holdout"), "--synthetic",
                   str(r / "test"), "--out", str(tmp_path / "o-rect")])
        err = capsys.readouterr().err.strip()
        assert rc == EXIT_DATA and "32×24" in err and "square" in err and not (tmp_path / "o-rect").exists()
