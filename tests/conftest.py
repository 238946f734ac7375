"""Fixtures shared by every test directory."""
import pytest
import torch


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
