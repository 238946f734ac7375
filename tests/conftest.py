"""Fixtures shared by every test directory, and the suite's split over CPUs (pytest-xdist).

pyproject's addopts run the suite with ``-n auto --dist loadfile``: one worker process per CPU this process may use
(affinity, cgroup quota; at most ``MAX_WORKERS``), each test file whole on one worker, so module- and file-level
fixtures are built once. Each worker gives torch its share of the CPUs (one thread on a 2-CPU machine), so two
workers never run four spinning OpenMP threads on two cores. ``-n 0`` runs the suite in one process.
"""
import os

import pytest
import torch

from cmraudit.cpu import available_cpus

MAX_WORKERS = 4  # more workers mostly repeat the session fixtures (micro runs), and memory grows with each


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per available CPU, at most ``MAX_WORKERS`` (the tests pin one torch thread each)."""
    return min(MAX_WORKERS, available_cpus())


def cpu_share() -> int:
    """CPUs this test process may keep busy: all of them alone, its share under pytest-xdist."""
    return max(1, available_cpus() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def pytest_configure(config):
    """Under pytest-xdist, hold this worker to its share of the CPUs: torch here, and (unless already set) the
    CLI's thread choice (``CMRAUDIT_THREADS``, which in-process ``cmraudit`` calls would otherwise raise to every
    CPU the moment the other workers pause) and the OpenMP pools of the subprocesses the tests start."""
    if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
        share = cpu_share()
        os.environ.setdefault("CMRAUDIT_THREADS", str(share))
        os.environ.setdefault("OMP_NUM_THREADS", str(share))
        torch.set_num_threads(share)


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the duration of a test, restored afterwards.

    Micro networks run faster on one thread, and multi-threaded torch on a machine whose cores
    are shared by parallel jobs is several times slower than one thread. Directories and modules
    opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` or an autouse wrapper.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def micro_cli_run(tmp_path_factory):
    """``cmraudit run --preset micro`` as a subprocess with stdout/stderr captured (no TTY), once per session.

    Returns a dict: ``run_dir``, ``lines`` [(seconds since start, stream, text)], ``wall`` (s), ``rc``, ``stdout``,
    ``stderr``. Used by the CI-progress test and the headless-browser test of a real micro report."""
    import os
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("micro_cli") / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "CMRAUDIT_PROGRESS_SECONDS")}
    env.update(PYTHONPATH=os.pathsep.join([str(root), str(root / "plugins"), env.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", CMRAUDIT_THREADS="1")
    lines: list[tuple[float, str, str]] = []
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "cmraudit", "run", "--generator", "ddpm", "--preset", "micro",
                             "--device", "cpu", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=env, cwd=str(out.parent))

    def _read(stream, name):
        for line in stream:
            lines.append((time.monotonic() - t0, name, line.rstrip("\n")))

    readers = [threading.Thread(target=_read, args=(proc.stdout, "stdout")),
               threading.Thread(target=_read, args=(proc.stderr, "stderr"))]
    for r in readers:
        r.start()
    rc = proc.wait(timeout=1800)
    for r in readers:
        r.join()
    wall = time.monotonic() - t0
    lines.sort(key=lambda x: x[0])
    return {"run_dir": out, "lines": lines, "wall": wall, "rc": rc,
            "stdout": "\n".join(t for _, s, t in lines if s == "stdout"),
            "stderr": "\n".join(t for _, s, t in lines if s == "stderr")}
