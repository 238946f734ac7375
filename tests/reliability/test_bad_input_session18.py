"""Bad input found in review: importer inputs inside --out, corrupt numpy files, NaN on export, unnamed write
errors, dataset errors naming the folder, `sample --masks` of another size, a malformed split.json, --threads
without a bound, and the bare `cmraudit` help. Each gives one line naming the file or option and the documented
exit code (docs/cli.md): 2 usage, 4 data."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cmraudit.cli.main import main
from cmraudit.errors import EXIT_DATA, EXIT_USAGE, DataError
from cmraudit.privacy.pairs import save_top_pairs

from .conftest import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_line(err: str) -> str:
    assert "Traceback" not in err and "internal error" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")  # no filename: as PIL / matplotlib raise it


@pytest.fixture
def exported(assets, tmp_path, capsys):
    """A copy of the phantom dataset (a cmraudit output, so --overwrite may replace it) and its PNG export."""
    shutil.copytree(assets["ph"], tmp_path / "reimp")
    assert cli(["data", "export", str(assets["ph"]), "--format", "png", "--out", str(tmp_path / "exp")], capsys)[0] == 0
    return tmp_path / "reimp", tmp_path / "exp"


# ------------------------------------------------------------------ 1: importer inputs inside --out
def test_import_images_refuses_ids_inside_out(exported, capsys):
    reimp, exp = exported
    shutil.copy(exp / "ids.csv", reimp / "ids.csv")
    rc, _, err = cli(["data", "import", "images", str(exp / "images"), "--ids", str(reimp / "ids.csv"),
                      "--scale", "range:0,255", "--out", str(reimp), "--overwrite"], capsys)
    assert rc == EXIT_USAGE and "--ids" in _one_line(err) and str(reimp) in err
    assert (reimp / "ids.csv").is_file()


def test_import_images_refuses_mask_palette_inside_out(exported, capsys):
    reimp, exp = exported
    (reimp / "pal.json").write_text('{"0": [0, 0, 0], "1": [255, 0, 0]}')
    rc, _, err = cli(["data", "import", "images", str(exp / "images"), "--masks", str(exp / "masks"),
                      "--mask-palette", str(reimp / "pal.json"), "--scale", "range:0,255", "--out", str(reimp),
                      "--overwrite"], capsys)
    assert rc == EXIT_USAGE and "--mask-palette" in _one_line(err)
    assert (reimp / "pal.json").is_file()


# ------------------------------------------------------------------ 2: corrupt numpy files
def test_import_images_truncated_npz_and_empty_npy_are_data_errors(tmp_path, capsys):
    np.savez(tmp_path / "a.npz", images=np.random.default_rng(0).random((32, 32)))
    data = (tmp_path / "a.npz").read_bytes()
    for n in (30, len(data) // 2):
        folder = tmp_path / f"npz{n}"
        folder.mkdir()
        (folder / "b.npz").write_bytes(data[:n])
        rc, _, err = cli(["data", "import", "images", str(folder), "--out", str(tmp_path / f"o{n}")], capsys)
        assert rc == EXIT_DATA and str(folder / "b.npz") in _one_line(err)
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "empty" / "e.npy", np.zeros((0, 32, 32)))
    rc, _, err = cli(["data", "import", "images", str(tmp_path / "empty"), "--out", str(tmp_path / "oe")], capsys)
    assert rc == EXIT_DATA and str(tmp_path / "empty" / "e.npy") in _one_line(err)
    assert not (tmp_path / "oe").exists()


# ------------------------------------------------------------------ 3: export refuses NaN; write errors name the path
def test_export_refuses_nan(assets, tmp_path, capsys):
    bad = tmp_path / "nan"
    shutil.copytree(assets["ph"], bad)
    images = np.load(bad / "images.npy")
    images[0, 0, 0] = np.nan
    np.save(bad / "images.npy", images)
    rc, _, err = cli(["data", "export", str(bad), "--format", "png", "--out", str(tmp_path / "exp")], capsys)
    assert rc == EXIT_DATA and str(bad) in _one_line(err) and "NaN" in err
    assert not (tmp_path / "exp").exists()


def test_export_disk_full_names_the_output(assets, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("cmraudit.data.export.write_png", _enospc)
    out = tmp_path / "exp"
    rc, _, err = cli(["data", "export", str(assets["ph"]), "--format", "png", "--out", str(out)], capsys)
    assert rc == EXIT_DATA and str(out) in _one_line(err) and "No space left" in err and "a file" not in err
    assert list(tmp_path.iterdir()) == []


def test_top_pairs_disk_full_names_the_png(tmp_path, monkeypatch):
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", _enospc)
    rng = np.random.default_rng(0)
    per_slice = {"d1": np.array([0.5, 0.2]), "nn_index": np.array([0, 1]), "copy": np.array([False, True]),
                 "nn_patient": np.array(["p0", "p1"], dtype=object)}
    path = tmp_path / "top_pairs_pixel.png"
    with pytest.raises(DataError, match="top_pairs_pixel.png.*No space left"):
        save_top_pairs(synthetic_images=rng.random((2, 8, 8)), train_images=rng.random((2, 8, 8)),
                       per_slice=per_slice, path=path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 4: dataset errors name the folder
@pytest.mark.parametrize("what", ["masks-shape", "images-dtype"])
def test_dataset_array_errors_name_the_folder(what, assets, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(assets["ph"], bad)
    if what == "masks-shape":
        np.save(bad / "masks.npy", np.zeros((len(np.load(bad / "masks.npy")), 16, 16), np.uint8))
    else:
        np.save(bad / "images.npy", np.load(bad / "images.npy").astype(np.float64))
    rc, _, err = cli(["data", "info", str(bad)], capsys)
    assert rc == EXIT_DATA and _one_line(err).startswith(f"error: {bad}: "), err


# ------------------------------------------------------------------ 5: sample --masks of another size
def test_sample_masks_of_another_size_is_a_data_error(assets, tmp_path, capsys):
    ph16 = tmp_path / "ph16"
    assert cli(["data", "phantom", "--out", str(ph16), "--subjects", "2", "--size", "16", "--slices", "1"],
               capsys)[0] == 0
    out = tmp_path / "syn"
    rc, _, err = cli(["sample", "--model", str(assets["model"]), "--masks", str(ph16), "--out", str(out)], capsys)
    assert rc == EXIT_DATA and _one_line(err).startswith(f"error: --masks {ph16}: "), err
    assert "16×16" in err and "32×32" in err and not out.exists()


# ------------------------------------------------------------------ 6: a malformed split.json
@pytest.mark.parametrize("text", ["[1, 2]", '{"train": 5}', "not json {"])
def test_card_refuses_a_malformed_split(text, assets, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(assets["run"], run)
    (run / "split.json").write_text(text)
    rc, _, err = cli(["card", str(run)], capsys)
    assert rc == EXIT_DATA and str(run / "split.json") in _one_line(err)
    (run / "split.json").write_text('{"train": ["p0"], "holdout": [], "test": ["p9"]}')
    assert cli(["card", str(run)], capsys)[0] == 0


# ------------------------------------------------------------------ 7: --threads has a maximum
@pytest.mark.parametrize("how", ["option", "env"])
def test_threads_beyond_the_maximum_is_a_usage_error(how, assets):
    """In a subprocess: before the bound, 32768 threads crashed the interpreter (SIGSEGV)."""
    argv = [sys.executable, "-m", "cmraudit", *(["--threads", "32768"] if how == "option" else []),
            "data", "info", str(assets["ph"])]
    env = {"CMRAUDIT_THREADS": "32768"} if how == "env" else {}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert r.returncode == EXIT_USAGE and "--threads" in _one_line(r.stderr) and "1024" in r.stderr, r.stderr


# ------------------------------------------------------------------ 8: bare `cmraudit` prints its help
@pytest.mark.parametrize("argv", [[], ["data"], ["data", "import"]])
def test_group_without_a_command_prints_the_help(argv, capsys):
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE and err.startswith("Usage: cmraudit") and "error:" not in err
    assert "Commands:" in err and len(err.splitlines()) > 5
