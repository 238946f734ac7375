"""Issue 15, fail-closed plugins and Ctrl-C: a plugin that exits, interrupts or raises at import is listed as
broken and never ends the process; a third-party 'ddpm' never shadows the built-in; SIGINT prints one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cmraudit.generators import registry

from .conftest import cli


def test_generators_list_survives_hostile_plugins(hostile_plugins, capsys):
    rc, out, err = cli(["generators", "list"], capsys)
    assert rc == 0 and "Traceback" not in out + err
    broken = {line.split()[1]: line for line in out.splitlines() if line.startswith("broken: ")}
    assert (
        "SystemExit" in broken["exitgen"]
        and "KeyboardInterrupt" in broken["kbgen"]
        and "BaseException" in broken["basegen"]
    )
    ignored = [line for line in out.splitlines() if line.startswith("ignored: ddpm")]
    assert len(ignored) == 1 and "hostile" in ignored[0] and "rel15_ok:Impostor" in ignored[0]


def test_builtin_name_cannot_be_shadowed(hostile_plugins):
    info = registry.get_plugin("ddpm")  # the impostor comes first on sys.path
    assert info.distribution == registry.BUILTIN_DIST and info.cls.__module__.startswith("cmraudit")
    assert [c.distribution for c in registry.CONFLICTS] == ["hostile"]


def test_plugin_exit_at_import_fails_closed_for_run(hostile_plugins, assets, tmp_path, capsys):
    rc, out, err = cli(["run", "-g", "exitgen", "--data", str(assets["ph"]), "--out", str(tmp_path / "r")], capsys)
    assert rc == 3 and "exitgen" in err and list(tmp_path.iterdir()) == []


def _wait_for(path: Path, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.2)


def test_sigint_prints_one_line_and_exits_130(tmp_path):
    """A real SIGINT during `data phantom`: exit 130, one line saying so, no traceback, nothing left behind."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    code = (
        # a shell that runs a job in the background without job control starts it with SIGINT ignored, and the
        # child would inherit that: install Python's own handler, as an interactive start would have it
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import time, cmraudit.data.phantom as ph\n"
        "def slow(*a, **k):\n    open('started', 'w').close()\n    time.sleep(60)\n"
        "ph.make_phantom = slow\n"
        "from cmraudit.cli.main import main\n"
        "raise SystemExit(main(['-q', 'data', 'phantom', '--out', 'o', '--size', '32']))\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(tmp_path / "started")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err
    assert [x for x in err.splitlines() if x.strip()] == [x for x in err.splitlines() if x.startswith("interrupted")]
    assert len(err.strip().splitlines()) == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ["started"]
