"""Issue 15, data loss: no command, with any --out / --overwrite, removes or changes a file it did not create
(checksums of every input before and after); --overwrite replaces only cmraudit's own outputs and leaves no
``.NAME.old-PID`` / ``.tmp`` behind; disk full leaves nothing (exit 4 naming the path); the permission policy."""

from __future__ import annotations

import errno
import os
import shutil
import stat

import pytest

from cmraudit import io_guard
from cmraudit.errors import EXIT_DATA

from .conftest import cli, snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: command with {OUT}; the inputs it reads (asset names)
COMMANDS = {
    "phantom": ("data phantom --subjects 2 --slices 1 --size 32 --out {OUT}", []),
    "import-folder": ("data import folder {raw} --crop 32 --out {OUT}", ["raw"]),
    "import-mnms": ("data import mnms {mnms} --info {info} --crop 32 --out {OUT}", ["mnms", "info"]),
    "run": ("run -g ddpm --preset micro --data {ph} --out {OUT}", ["ph"]),
    "fit-out": ("fit -g ddpm --preset micro --set steps=1 --data {ph} --out {OUT}", ["ph"]),
    "fit-work-dir": ("fit -g ddpm --preset micro --set steps=1 --data {ph} --out {t}/m --work-dir {OUT}", ["ph"]),
    "sample": ("sample --model {model} --n 2 --out {OUT}", ["model"]),
    "sample-masks": ("sample --model {model} --masks {ph1} --out {OUT}", ["model", "ph1"]),
    "audit": ("audit --train {ph} --holdout {ph5} --synthetic {ph1} --feature pixel --out {OUT}", ["ph", "ph5", "ph1"]),
    "compare": ("compare {run} {run2} --out {OUT}", ["run", "run2"]),
    "report": ("report {run} --out {OUT}", ["run"]),
    "gate-junit": ("gate {run} --junit {OUT}", ["run"]),
    "sweep": ("sweep -g ddpm --preset micro --data {ph} --out {OUT}", ["ph"]),
}


def _targets(assets, inputs, command):
    """Every dangerous --out: each input, a path inside it, the folder holding it, a user's file and folder, and
    cmraudit's own output of another kind (a model; for fit --out a model is its own kind, so a dataset)."""
    other = assets["ph5"] if command == "fit-out" else assets["model"]
    out = [("file", str(assets["file"])), ("foreign", str(assets["foreign"])), ("other-kind", str(other))]
    for name in inputs:
        p = assets[name]
        out += [(name, str(p)), (f"{name}/inside", str(p / "inside")), (f"{name}/..", str(p.parent))]
    return out


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_input_ever_changes(command, overwrite, assets, tmp_path, capsys):
    template, inputs = COMMANDS[command]
    fmt = {k: str(v) for k, v in assets.items()} | {"t": str(tmp_path)}
    before = snapshot(assets["root"])
    for label, target in _targets(assets, inputs, command):
        argv = template.format(**fmt, OUT=target).split() + (
            ["--overwrite"] if overwrite and "--overwrite" in _HAS_OVERWRITE[command] else []
        )
        rc, out, err = cli(argv, capsys)
        # a target that is an input, inside one, holds one, or is not cmraudit's: refused before any work
        assert rc != 0, f"{command} --out {label} succeeded"
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert snapshot(assets["root"]) == before, f"{command} --out {label}: an input changed"
    assert list(tmp_path.iterdir()) == []


_HAS_OVERWRITE = {
    k: (
        "--overwrite"
        if k
        in {
            "phantom",
            "import-folder",
            "import-mnms",
            "run",
            "sample",
            "sample-masks",
            "sweep",
            "fit-out",
            "fit-work-dir",
        }
        else ""
    )
    for k in COMMANDS
}


def _listing(p):
    return sorted(str(x.relative_to(p)) for x in p.rglob("*"))


def test_overwrite_replaces_only_own_outputs(assets, tmp_path, capsys):
    fmt = {k: str(v) for k, v in assets.items()} | {"t": str(tmp_path)}
    before = snapshot(assets["root"])
    cmds = [
        "data phantom --subjects 2 --slices 1 --size 32 --out {t}/ph",
        "data import folder {raw} --crop 32 --out {t}/imp",
        "sample --model {model} --n 2 --out {t}/syn",
        "compare {run} {run2} --out {t}/cmp",
    ]
    for c in cmds:
        argv = c.format(**fmt).split()
        assert cli(argv, capsys)[0] == 0
        first = _listing(tmp_path)
        rc, _, err = cli(argv, capsys)  # again, without --overwrite: refused where documented, else identical
        assert rc in (0, EXIT_DATA) and _listing(tmp_path) == first, err
        if "--out {t}/cmp" not in c:
            assert cli(argv + ["--overwrite"], capsys)[0] == 0
        assert _listing(tmp_path) == first, "a leftover (.NAME.old-PID, .tmp) or a missing output"
        assert not [x for x in first if ".old-" in x or x.endswith(".tmp")]
    assert (tmp_path / "ph" / io_guard.MARKER).is_file() and (tmp_path / "syn_nifti" / "images.nii.gz").is_file()
    # report --out and gate --junit create missing folders and replace only their own earlier file
    assert cli(["report", fmt["run"], "--out", f"{tmp_path}/new/dir/r.html"], capsys)[0] == 0
    assert cli(["report", fmt["run"], "--out", f"{tmp_path}/new/dir/r.html"], capsys)[0] == 0
    assert cli(["gate", fmt["run"], "--junit", f"{tmp_path}/ci/gate.xml"], capsys)[0] in (0, 1)
    assert cli(["gate", fmt["run"], "--junit", f"{tmp_path}/ci/gate.xml"], capsys)[0] in (0, 1)
    assert (tmp_path / "ci" / "gate.xml").stat().st_size > 0
    assert snapshot(assets["root"]) == before


def test_overwrite_never_replaces_a_regular_file_or_foreign_dir(tmp_path):
    from cmraudit.data.dataset import write_dataset
    from cmraudit.errors import UsageError

    from ..report.report_fixtures import textured_dataset

    ds = textured_dataset(2, 1, seed=0)
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("y")
    for target in ("f", "d"):
        with pytest.raises(UsageError):
            write_dataset(ds, tmp_path / target, overwrite=True)
    assert (tmp_path / "f").read_text() == "x" and (tmp_path / "d" / "keep").read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]  # no .f.old-PID, no .tmp


def _enospc(stage, path):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "argv,named",
    [
        ("data phantom --subjects 2 --slices 1 --size 32 --out {t}/ph", "{t}/ph"),
        ("data import folder {raw} --crop 32 --out {t}/imp", "{t}/imp"),
        ("sample --model {model} --n 2 --out {t}/syn", "{t}/syn"),
        ("report {run} --out {t}/r.html", "{t}/r.html"),
        ("compare {run} {run2} --out {t}/cmp", "{t}/cmp"),
        ("gate {run} --junit {t}/gate.xml", "{t}/gate.xml"),
    ],
    ids=["phantom", "import", "sample", "report", "compare", "gate-junit"],
)
def test_disk_full_leaves_nothing(argv, named, assets, tmp_path, capsys, monkeypatch):
    """ENOSPC injected on the write helpers (a tmpfs cannot be mounted in the test sandbox)."""
    monkeypatch.setattr(io_guard, "_inject", _enospc)
    fmt = {k: str(v) for k, v in assets.items()} | {"t": str(tmp_path)}
    before = snapshot(assets["root"])
    rc, out, err = cli(argv.format(**fmt).split(), capsys)
    assert rc == EXIT_DATA and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert named.format(**fmt) in err and "No space left" in err
    assert list(tmp_path.iterdir()) == [], f"left behind: {_listing(tmp_path)}"
    assert snapshot(assets["root"]) == before


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_permissions_follow_the_umask(mask, assets, tmp_path, capsys):
    old = os.umask(mask)
    try:
        fmt = {k: str(v) for k, v in assets.items()} | {"t": str(tmp_path)}
        assert cli(f"data phantom --subjects 2 --slices 1 --size 32 --out {tmp_path}/ph".split(), capsys)[0] == 0
        shutil.copytree(assets["run"], tmp_path / "run")
        assert cli(["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html")], capsys)[0] == 0
        assert cli(["gate", fmt["run"], "--junit", str(tmp_path / "g.xml")], capsys)[0] in (0, 1)
        from cmraudit.generators.checkpoint import save_weights
        import torch

        save_weights(tmp_path / "w.safetensors", {"a": torch.zeros(2)})
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "ph") == 0o777 & ~mask
    for f in (
        tmp_path / "ph" / "images.npy",
        tmp_path / "ph" / io_guard.MARKER,
        tmp_path / "r.html",
        tmp_path / "g.xml",
        tmp_path / "w.safetensors",
    ):
        assert mode(f) == 0o666 & ~mask, f
