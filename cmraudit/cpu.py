"""CPU threads that fit the machine the process actually has (issue 18, point 1).

torch, FAISS and BLAS default to one thread per core of the *machine*, spin-waiting between parallel regions. On a
shared workstation or CI runner (other processes busy, a cgroup CPU quota, a restricted affinity mask) every such
thread competes with the others and a run can go 10× slower. :func:`auto_threads` picks

    min(CPUs in the affinity mask, the cgroup CPU quota) − the CPUs other processes keep busy right now

(measured from /proc/stat over ``sample_s``; at least 1), and :func:`configure_cpu` applies it. The CLI does so at
start-up unless ``--threads`` / ``CMRAUDIT_THREADS`` say otherwise. Measured (bench/bench_contention.py,
docs/benchmarks.md): beside one CPU-burning process on 2 cores, quick mask-model training keeps 62 % of its idle
speed with the chosen single thread against 31 % with torch's default two. OpenMP's passive wait
(``OMP_WAIT_POLICY=PASSIVE``) is *not* set: it cost 37 % of the idle speed of two threads and changes nothing
for one; users can still set it.
Hand-written: neither psutil nor threadpoolctl reads cgroup quotas or current load.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

from .device import set_cpu_threads


def available_cpus() -> int:
    """CPUs this process may run on: the affinity mask, capped by a cgroup v2 / v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota + 1e-9)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def _cpu_times() -> tuple[float, float] | None:
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        v = [float(x) for x in f]
        idle = v[3] + (v[4] if len(v) > 4 else 0.0)
        return sum(v[:8]), idle
    except (OSError, ValueError, IndexError):
        return None


def busy_cpus(sample_s: float = 0.25) -> float:
    """CPUs kept busy by other processes right now (machine-wide, from /proc/stat; 0 when unknown)."""
    a = _cpu_times()
    if a is None:
        return 0.0
    time.sleep(sample_s)
    b = _cpu_times()
    if b is None or b[0] <= a[0]:
        return 0.0
    busy_share = 1.0 - (b[1] - a[1]) / (b[0] - a[0])
    return max(0.0, busy_share * (os.cpu_count() or 1))


def auto_threads(sample_s: float = 0.25) -> int:
    """Threads for this process: available CPUs minus those other processes keep busy (at least 1)."""
    n = available_cpus()
    free = n - busy_cpus(sample_s)
    return max(1, min(n, int(math.floor(free + 0.5))))


_AUTO: int | None = None


def configure_cpu(threads: int | None = None) -> int:
    """Apply ``threads`` to torch, FAISS and the BLAS pools; return the number in use.

    ``None``: :func:`auto_threads`, measured once per process. The pools are only touched when that is fewer
    than torch's own default (a contended or quota-limited machine): on an idle machine nothing changes.
    """
    global _AUTO
    import torch

    if threads is not None:
        set_cpu_threads(int(threads))
        return int(threads)
    if _AUTO is None:
        _AUTO = auto_threads()
    if _AUTO < torch.get_num_threads():
        set_cpu_threads(_AUTO)
    return int(torch.get_num_threads())


def map_chunks(fn, n: int, chunk: int, workers: int | None = None) -> list:
    """``fn(slice)`` over consecutive chunks of ``n`` rows, on ``workers`` threads (default: torch's thread budget,
    which :func:`configure_cpu` set); results in chunk order. For numpy / scipy / FFT work that releases the GIL:
    each chunk is computed on its own, so the results do not depend on the number of workers."""
    from concurrent.futures import ThreadPoolExecutor

    if workers is None:
        import torch

        workers = torch.get_num_threads()
    slices = [slice(s, min(s + chunk, n)) for s in range(0, n, max(1, chunk))]
    workers = max(1, min(int(workers), len(slices)))
    if workers == 1:
        return [fn(sl) for sl in slices]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, slices))
