"""Session fixtures for the reliability corpus: tiny inputs built once, good and deliberately broken.

``assets`` maps a name to a path under one session directory; every case's argv refers to these
names as ``{name}`` and to its own empty directory as ``{t}``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from cmraudit.cli.main import main
from cmraudit.generators import registry

from ..data.nifti_fixtures import make_acdc, make_folder, make_mnms
from ..report.report_fixtures import make_run_dir


def snapshot(root: Path) -> dict[str, str]:
    """Relative path → sha256 (directories → 'dir') of everything under ``root``, hidden files included."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):  # never follows symbolic links
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            else:
                out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process (quiet, one thread); return (exit code, stdout, stderr)."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["-q", "--threads", "1", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _edit_index(ds: Path, col: str, value: str, row: int = 0) -> None:
    rows = list(csv.DictReader(open(ds / "index.csv", newline="")))
    rows[row][col] = value
    with open(ds / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _bad_datasets(root: Path, good: Path) -> dict[str, Path]:
    def copy(name):
        dst = root / name
        shutil.copytree(good, dst)
        return dst

    out = {}
    out["bad_slice_index"] = d = copy("bad_slice_index")
    _edit_index(d, "slice_index", "abc")
    out["bad_spacing"] = d = copy("bad_spacing")
    _edit_index(d, "spacing_x_mm", "wide")
    out["bad_annotated"] = d = copy("bad_annotated")
    _edit_index(d, "annotated", "FOO")
    out["bad_json_list"] = d = copy("bad_json_list")
    (d / "dataset.json").write_text("[]")
    out["bad_version"] = d = copy("bad_version")
    meta = json.loads((d / "dataset.json").read_text())
    meta["format_version"] = "abc"
    (d / "dataset.json").write_text(json.dumps(meta))
    out["bad_0d"] = d = copy("bad_0d")
    np.save(d / "images.npy", np.float32(1.0))
    out["bad_rows"] = d = copy("bad_rows")
    lines = (d / "index.csv").read_text().splitlines()
    (d / "index.csv").write_text("\n".join(lines[:-3]) + "\n")
    out["bad_label7"] = d = copy("bad_label7")
    m = np.load(d / "masks.npy")
    m[0, 0, 0] = 7
    np.save(d / "masks.npy", m)
    out["bad_nan"] = d = copy("bad_nan")
    im = np.load(d / "images.npy")
    im[1, 3, 3] = np.nan
    np.save(d / "images.npy", im)
    out["bad_nojson"] = d = copy("bad_nojson")
    (d / "dataset.json").unlink()
    return out


def _bad_models(root: Path, good: Path) -> dict[str, Path]:
    def copy(name, edit=None):
        dst = root / name
        shutil.copytree(good, dst)
        if edit:
            cfg = json.loads((dst / "config.json").read_text())
            (dst / "config.json").write_text(json.dumps(edit(cfg)))
        return dst

    out = {
        "badm_version": copy("badm_version", lambda c: {**c, "format_version": "abc"}),
        "badm_list": copy("badm_list", lambda c: []),
        "badm_noparams": copy("badm_noparams", lambda c: {k: v for k, v in c.items() if k != "params"}),
        "badm_format": copy("badm_format", lambda c: {**c, "format": "something-else"}),
        "badm_unknown": copy("badm_unknown", lambda c: {**c, "generator": "no-such-gen"}),
        "badm_weights": copy("badm_weights"),
    }
    # another network's weights: the mask model's tensors where the image model's belong
    shutil.copy(out["badm_weights"] / "mask_model.safetensors", out["badm_weights"] / "image.safetensors")
    out["badm_garbage"] = d = copy("badm_garbage")
    (d / "image.safetensors").write_bytes(b"not a safetensors file")
    return out


def _raw_inputs(root: Path) -> dict[str, Path]:
    out = {"raw": make_folder(root / "raw", n=2), "acdc": make_acdc(root / "acdc", n_patients=2)}
    mn, info = make_mnms(root / "mnms", n_patients=2)
    out["mnms"], out["info"] = mn, info
    dup = root / "info_dup.csv"
    lines = info.read_text().splitlines()
    dup.write_text("\n".join(lines + [lines[1].replace(",A,", ",B,")]) + "\n")
    out["info_dup"] = dup
    for name, rows in (("sb_dup_pid", ["SCD1,SC-1", "SCD1,SC-2"]), ("sb_dup_orig", ["SCD1,SC-1", "SCD2,SC-1"])):
        d = root / name
        (d / "dicoms" / "SCD1").mkdir(parents=True)
        (d / "dicoms" / "SCD2").mkdir(parents=True)
        (d / "contourfiles").mkdir()
        (d / "link.csv").write_text("patient_id,original_id\n" + "\n".join(rows) + "\n")
        out[name] = d
    out["link_dup"] = out["sb_dup_pid"] / "link.csv"
    out["empty"] = root / "empty"
    out["empty"].mkdir()
    return out


def _misc(root: Path) -> dict[str, Path]:
    out = {}
    out["file"] = root / "file.txt"
    out["file"].write_text("a user's file\n")
    out["foreign"] = root / "foreign"
    out["foreign"].mkdir()
    (out["foreign"] / "notes.txt").write_text("keep me\n")
    out["foreign_html"] = root / "mine.html"
    out["foreign_html"].write_text("<html>my own page</html>\n")
    out["policy_nan"] = root / "nan.toml"
    out["policy_nan"].write_text("[rules]\ncopy_rate = nan\n")
    out["raw_link"] = root / "raw_link"  # a symbolic link to the raw NIfTI folder
    out["raw_link"].symlink_to(root / "raw", target_is_directory=True)
    out["dangling"] = root / "dangling"
    out["dangling"].symlink_to(root / "nowhere-at-all")
    out["shots"] = root / "shots"  # does not exist, but shots.png (a user's file) does
    (root / "shots.png").write_bytes(b"a user's picture")
    out["policy_inf"] = root / "inf.toml"
    out["policy_inf"].write_text("[rules]\nmia_auc = inf\n")
    return out


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """Every input of the corpus, built once (≈ 10 s): phantoms, raw folders, a micro model, a run, broken copies."""
    import torch

    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("reliability-inputs")
    a: dict[str, Path] = {"root": root}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, n in (("ph", 9), ("ph5", 5), ("ph1", 1)):
            assert (
                main(
                    [
                        "-q",
                        "data",
                        "phantom",
                        "--out",
                        str(root / name),
                        "--subjects",
                        str(n),
                        "--size",
                        "32",
                        "--slices",
                        "2",
                    ]
                )
                == 0
            )
            a[name] = root / name
        assert (
            main(
                [
                    "-q",
                    "--threads",
                    "1",
                    "fit",
                    "-g",
                    "ddpm",
                    "--preset",
                    "micro",
                    "--data",
                    str(a["ph"]),
                    "--out",
                    str(root / "model"),
                    "--set",
                    "steps=2",
                ]
            )
            == 0
        )
    torch.set_num_threads(threads)
    a["model"], a["model_work"] = root / "model", root / "model.work"
    # a training state of another network: the image stage's state where the mask stage's belongs
    a["work_foreign"] = root / "work_foreign"
    shutil.copytree(a["model_work"], a["work_foreign"])
    shutil.copy(a["model_work"] / "image" / "train_state.pt", a["work_foreign"] / "mask" / "train_state.pt")
    a.update(_bad_datasets(root, a["ph"]))
    a.update(_bad_models(root, a["model"]))
    a.update(_raw_inputs(root))
    a.update(_misc(root))
    a["run"] = make_run_dir(root / "run")[0]
    a["run2"] = make_run_dir(root / "run2", kind="copycat")[0]
    return a


def _fake_dist(root: Path, name: str, entry_points: str) -> None:
    d = root / f"{name}-0.1.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text(entry_points)


PLUGIN_SRC = """
from cmraudit.generators import BaseGenerator

class CtorFails(BaseGenerator):  # the contract's base class; its name is the entry point's
    def __init__(self, *, device="auto"):
        raise RuntimeError("constructor exploded")

class FitFails(BaseGenerator):
    def __init__(self, *, device="auto"):
        self.device = device
    def fit(self, data, **kw):
        raise ValueError("fit exploded")

class Impostor(FitFails):
    name = "ddpm"
"""


@pytest.fixture
def hostile_plugins(tmp_path_factory, monkeypatch):
    """Third-party plugins that exit, interrupt or raise at import, fail in constructor or fit, or reuse 'ddpm'."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "rel15_exit.py").write_text("import sys\nsys.exit(0)\n")
    (root / "rel15_kbint.py").write_text("raise KeyboardInterrupt\n")
    (root / "rel15_base.py").write_text("raise BaseException('plugin raised BaseException')\n")
    (root / "rel15_ok.py").write_text(PLUGIN_SRC)
    _fake_dist(
        root,
        "hostile",
        "[cmraudit.generators]\nexitgen = rel15_exit:Gen\nkbgen = rel15_kbint:Gen\n"
        "basegen = rel15_base:Gen\nctorgen = rel15_ok:CtorFails\nfitgen = rel15_ok:FitFails\n"
        "ddpm = rel15_ok:Impostor\n",
    )
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()
    yield root
    registry.refresh()
