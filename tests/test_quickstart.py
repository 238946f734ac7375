"""docs/quickstart.md followed as written, in a fresh folder (issue 17).

What is run: every ``bash`` block of sections 1, 3 and 4, one line at a time, with ``cmraudit`` on PATH (a shim
running this checkout's code) and a copy of ``examples/`` in the folder, as in a clone. Substituted, as the page
says: ``--preset micro`` on ``cmraudit run``; the environment lines of section 1 (``git clone``, ``venv``,
``pip install``) are not run — the environment under test stands in for them; ``cmraudit-runs/ddpm-…`` is the
folder the run created; ``/tmp/private-report.html`` is written inside the test folder. ``echo $?`` prints the
previous line's exit code. Not run: section 2 (the test suite itself), section 5 (400-subject runs: minutes of
CPU each) and section 6 (needs ACDC / M&Ms, registration required).
What is checked: a line ending in ``# → TEXT`` prints TEXT; every other line exits 0; the run folder holds
exactly the artefacts of section 1's table; the README's first command is section 1's.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "quickstart.md"
RUN_SECTIONS = ("1", "3", "4")


def _sections(text: str) -> dict[str, list[str]]:
    """Section number → its bash blocks' lines (continuations joined)."""
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"^## (\d+)\.(.*?)(?=^## |\Z)", text, re.S | re.M):
        lines = []
        for block in re.findall(r"```bash\n(.*?)```", m.group(2), re.S):
            lines += [ln.strip() for ln in block.replace("\\\n", " ").splitlines() if ln.strip()]
        out[m.group(1)] = lines
    return out


def _commands(line: str) -> list[str]:
    """Drop the environment set-up of a line (clone, venv, pip); keep its cmraudit commands."""
    parts = [p.strip() for p in line.split("&&")]
    keep = [p.replace(".venv/bin/cmraudit", "cmraudit") for p in parts
            if not p.startswith(("git clone", "cd cmraudit", "python3 -m venv")) and "pip install" not in p]
    return [k + (" --preset micro" if k.startswith("cmraudit run") else "") for k in keep]


def _table_paths(text: str) -> list[str]:
    sec = re.search(r"^## 1\.(.*?)^## ", text, re.S | re.M).group(1)
    rows = [ln for ln in sec.splitlines() if ln.startswith("| `")]
    return [p for row in rows for p in re.findall(r"`([^`]+)`", row.split("|")[1])]


@pytest.fixture(scope="module")
def followed(tmp_path_factory):
    work = tmp_path_factory.mktemp("quickstart")
    shutil.copytree(ROOT / "examples", work / "examples")
    bin_dir = work / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "cmraudit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cmraudit "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1", CMRAUDIT_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]))
    sections = _sections(DOC.read_text())
    results, prev_rc, run_dir = [], 0, None
    for number in RUN_SECTIONS:
        for line in sections[number]:
            cmd_part, _, expected = line.partition("# →")
            cmd_part = re.sub(r"\s+#.*$", "", cmd_part).strip()
            expected = expected.strip()
            for cmd in _commands(cmd_part):
                if run_dir is not None:
                    cmd, expected = (x.replace("cmraudit-runs/ddpm-…", run_dir) for x in (cmd, expected))
                cmd = cmd.replace("/tmp/private-report.html", "private-report.html")
                if cmd == "echo $?":
                    out, rc = str(prev_rc), 0
                else:
                    p = subprocess.run(cmd, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
                    out, rc, prev_rc = p.stdout + p.stderr, p.returncode, p.returncode
                results.append((cmd, expected, rc, out))
                if cmd.startswith("cmraudit run") and run_dir is None:
                    found = sorted((work / "cmraudit-runs").glob("ddpm-*"))
                    run_dir = f"cmraudit-runs/{found[0].name}" if found else "cmraudit-runs/missing"
    return work, run_dir, results


def test_readme_first_command_is_the_quickstart_one():
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip()
    assert first in _sections(DOC.read_text())["1"]


def test_every_line_gives_the_output_shown(followed):
    _, run_dir, results = followed
    assert run_dir and run_dir != "cmraudit-runs/missing"
    assert len(results) >= 7
    for cmd, expected, rc, out in results:
        if expected:
            assert expected in out, (cmd, expected, out[-2000:])
        elif not cmd.startswith("cmraudit gate"):  # gate lines are followed by `echo $?  # → code`
            assert rc == 0, (cmd, out[-2000:])
    run_out = next(out for cmd, _, _, out in results if cmd.startswith("cmraudit run"))
    assert f"report: {run_dir}/report.html" in run_out and "patients" in run_out
    assert "CONTAINS REAL PATIENT IMAGES" in (followed[0] / "private-report.html").read_text()
    ran = " ; ".join(cmd for cmd, _, _, _ in results)
    for part in ("cmraudit run --generator ddpm --preset micro", "cmraudit report", "cmraudit card",
                 "pilot-policy.toml", "policy.toml --junit gate.xml", "cmraudit plan"):
        assert part in ran, (part, ran)
    assert [out for cmd, _, _, out in results if cmd == "echo $?"] == ["1", "0"]  # default policy, pilot policy


def test_run_folder_table_lists_every_artefact(followed):
    work, run_dir, _ = followed
    root = work / run_dir
    patterns = [p.rstrip("/") for p in _table_paths(DOC.read_text())]
    patterns = [re.sub(r"<[^>]+>", "*", p) for p in patterns]
    present = [p.relative_to(root).as_posix() for p in root.iterdir()]
    present += [p.relative_to(root).as_posix() for d in ("privacy", "logs", "data") if (root / d).is_dir()
                for p in (root / d).iterdir()]
    present += [p.relative_to(root).as_posix() for p in (root / "logs" / "snapshots").glob("*")]

    def covered(path: str) -> bool:
        return any(fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or pat.startswith(path + "/")
                   for pat in patterns)

    assert [p for p in present if not covered(p)] == []  # nothing in the folder the table does not name
    for pat in patterns:  # and everything the table names is there
        assert any(fnmatch.fnmatch(p, pat) for p in present), pat
