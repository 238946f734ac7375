"""CPU threads that fit the machine the process actually has (issue 18, point 1).

torch, FAISS and BLAS default to one thread per core of the *machine*, spin-waiting between parallel regions. On a
shared workstation or CI runner (other processes busy, a cgroup CPU quota, a restricted affinity mask) every such
thread competes with the others and a run can go 10× slower. :func:`auto_threads` picks

    min(CPUs in the affinity mask, the cgroup CPU quota) − the CPUs other processes keep busy right now

(measured from /proc/stat over ``sample_s``, less this process's own CPU time; at least 1), and
:func:`configure_cpu` applies it. The CLI does so at start-up unless ``--threads`` / ``CMRAUDIT_THREADS`` say
otherwise, and ``run`` / ``evaluate`` measure again as each stage starts (:func:`refresh_threads`): a moment of load
at start-up (another command starting) once held a whole quick run at one thread. Measured (bench/bench_contention.py,
docs/benchmarks.md): beside one CPU-burning process on 2 cores, quick mask-model training keeps 62 % of its idle
speed with the chosen single thread against 31 % with torch's default two. OpenMP's passive wait
(``OMP_WAIT_POLICY=PASSIVE``) is *not* set: it cost 37 % of the idle speed of two threads and changes nothing
for one; users can still set it.
Hand-written: neither psutil nor threadpoolctl reads cgroup quotas or current load.

Independent torch jobs (the generator's two training stages, the utility stage's segmenters) run *side by side* on
worker threads, one torch thread each, when the lane budget has two or more CPUs (:func:`side_by_side_lanes`,
:func:`lane_budget`, :func:`map_side_by_side`, :class:`Beside`): small networks gain only 1.3–1.6× from a second
thread. Under automatic threads the lane budget is the CPUs available whatever the load: one-thread jobs never
spin-wait on each other, so beside a busy process two of them still end sooner than one after the other. A thread pool
of the standard library, not Ray or processes: the jobs share the data in memory, torch releases the GIL inside its
operators, and a worker thread starts in microseconds.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

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
    """CPUs kept busy by other processes right now (machine-wide, from /proc/stat, less this process's own CPU
    time over the same interval; 0 when unknown)."""
    a, own0, w0 = _cpu_times(), time.process_time(), time.perf_counter()
    if a is None:
        return 0.0
    time.sleep(sample_s)
    b, own1, w1 = _cpu_times(), time.process_time(), time.perf_counter()
    if b is None or b[0] <= a[0]:
        return 0.0
    busy_share = 1.0 - (b[1] - a[1]) / (b[0] - a[0])
    own = (own1 - own0) / max(w1 - w0, 1e-9)  # this process's threads (a worker still running, pools spinning down)
    return max(0.0, busy_share * (os.cpu_count() or 1) - own)


def auto_threads(sample_s: float = 0.25) -> int:
    """Threads for this process: available CPUs minus those other processes keep busy (at least 1)."""
    n = available_cpus()
    free = n - busy_cpus(sample_s)
    return max(1, min(n, int(math.floor(free + 0.5))))


_AUTO: int | None = None
#: "auto" or "explicit" once :func:`configure_cpu` ran (the CLI: at start-up); None in library use
_MODE: str | None = None
_DEFAULT: int | None = None  # torch's own thread count before configure_cpu touched it


def configure_cpu(threads: int | None = None) -> int:
    """Apply ``threads`` to torch, FAISS and the BLAS pools; return the number in use.

    ``None``: :func:`auto_threads`, measured once per process (then again at each stage of a run:
    :func:`refresh_threads`). The pools are only touched when that is fewer than torch's own default (a contended or
    quota-limited machine): on an idle machine nothing changes.
    """
    global _AUTO, _MODE, _DEFAULT
    import torch

    if _DEFAULT is None:
        _DEFAULT = int(torch.get_num_threads())
        _remember_pools()
    if threads is not None:
        set_cpu_threads(int(threads))
        _MODE = "explicit"
        return int(threads)
    _MODE = "auto"
    if _AUTO is None:
        _AUTO = auto_threads()
    if _AUTO < torch.get_num_threads():
        set_cpu_threads(_AUTO)
    return int(torch.get_num_threads())


def refresh_threads(sample_s: float = 0.2) -> int:
    """Measure the machine's load again and re-apply :func:`auto_threads` (at most torch's default); return the
    threads in use. Only under automatic threads (:func:`configure_cpu` with ``None``); a ``--threads`` /
    ``CMRAUDIT_THREADS`` setting and library use (configure_cpu never called) are left as they are.

    ``run`` and ``evaluate`` call it as each stage starts, so a moment of load at start-up (another command
    starting, a test) no longer holds the whole run at one thread, nor a load that has started since at two.
    """
    global _AUTO
    import torch

    if _MODE != "auto":
        return int(torch.get_num_threads())
    _AUTO = min(auto_threads(sample_s), _DEFAULT or available_cpus())
    if _AUTO != torch.get_num_threads():
        _apply_threads(_AUTO)
    return int(torch.get_num_threads())


def end_invocation() -> None:
    """Forget the CLI's thread mode once a command has returned (``cmraudit.cli.main``): library use later in the
    same process keeps the caller's own torch setting (:func:`refresh_threads`, :func:`lane_budget`)."""
    global _MODE
    _MODE = None


#: each BLAS / OpenMP pool's own thread count when first seen (OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, ...)
_POOL_CAP: dict[str, int] = {}


def _pools() -> list:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return []
    return list(ThreadpoolController().lib_controllers)


def _remember_pools() -> None:
    try:
        import faiss  # noqa: F401 - its OpenMP and BLAS pools, before configure_cpu may lower them
    except ImportError:  # pragma: no cover - faiss is a dependency
        pass
    for lib in _pools():
        _POOL_CAP.setdefault(lib.filepath, int(lib.num_threads))


def _apply_threads(n: int) -> None:
    """:func:`cmraudit.device.set_cpu_threads` for :func:`refresh_threads`, which may also raise the count: no BLAS
    or OpenMP pool goes above its own setting when first seen."""
    import torch

    torch.set_num_threads(int(n))
    try:
        import faiss

        faiss.omp_set_num_threads(int(n))
    except ImportError:  # pragma: no cover - faiss is a dependency
        pass
    for lib in _pools():
        lib.set_num_threads(min(int(n), _POOL_CAP.setdefault(lib.filepath, int(lib.num_threads))))


def lane_budget() -> int:
    """CPUs that independent one-thread jobs may occupy (:func:`side_by_side_lanes`): under automatic threads
    the CPUs available to the process, whatever the load (one-thread jobs never spin-wait on each other, so beside
    other processes two of them still finish sooner than one after the other: docs/benchmarks.md); otherwise
    torch's thread count (``--threads``, or the caller's setting in library use)."""
    import torch

    if _MODE == "auto":
        return min(available_cpus(), _DEFAULT or available_cpus())
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


# ---------------------------------------------------------------- independent torch jobs side by side
#: environment variable: ``0`` runs independent torch jobs one after the other on all threads (see side_by_side_lanes)
ENV_SIDE_BY_SIDE = "CMRAUDIT_SIDE_BY_SIDE"
#: serialises blocks that seed and use torch's global RNG (module initialisation) across threads
GLOBAL_RNG_LOCK = threading.RLock()
#: True inside a side-by-side job: a job does not start lanes of its own
_IN_LANE: contextvars.ContextVar[bool] = contextvars.ContextVar("cmraudit_in_lane", default=False)


def _as_lane(fn: Callable[..., Any]) -> Callable[..., Any]:
    def job(*args):
        _IN_LANE.set(True)  # inside the job's own copy of the caller's context
        return fn(*args)

    return job


def side_by_side_lanes(device, jobs: int) -> int:
    """How many independent torch jobs (the two training stages, the utility segmenters) run at once, on worker
    threads with one torch thread each, instead of one after the other on all of torch's threads.

    On the CPU with a budget of at least 2 (:func:`lane_budget`): ``min(budget, jobs)``. The networks of the
    quick preset use two cores badly: two threads make a mask-model step 1.3× and a segmenter 1.3× faster than one
    (docs/benchmarks.md), so two jobs on one core each finish sooner. 1 (one after the other) on a GPU, with a
    budget of one thread, for a single job, inside a side-by-side job, or when ``CMRAUDIT_SIDE_BY_SIDE=0``. A job on
    one thread computes what a ``--threads 1`` run computes, so its result does not depend on the lanes.
    """
    if os.environ.get(ENV_SIDE_BY_SIDE, "").strip().lower() in ("0", "off", "false", "no"):
        return 1
    if getattr(device, "type", str(device)) != "cpu" or jobs < 2 or _IN_LANE.get():
        return 1
    n = lane_budget()
    return min(int(n), int(jobs)) if n >= 2 else 1


@contextlib.contextmanager
def one_torch_thread_each() -> Iterator[None]:
    """torch at one intra-op thread for the block (threads started inside inherit it), restored afterwards; no
    further lanes start inside it (:func:`side_by_side_lanes` gives 1)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    token = _IN_LANE.set(True)
    try:
        yield
    finally:
        _IN_LANE.reset(token)
        torch.set_num_threads(n)


class Beside:
    """``fn()`` on a worker thread, with the caller's context variables, while the caller works on.

    :meth:`result` waits and returns its value or raises its exception; :attr:`stop` is an Event the job may poll to
    end early (see :meth:`cancel`)."""

    def __init__(self, fn: Callable[[], Any], *, name: str, stop: threading.Event | None = None):
        self.stop = threading.Event() if stop is None else stop
        self._out: Any = None
        self._err: BaseException | None = None
        ctx = contextvars.copy_context()
        self._thread = threading.Thread(target=self._run, args=(ctx, _as_lane(fn)), name=f"cmraudit-{name}",
                                        daemon=True)
        self._thread.start()

    def _run(self, ctx, fn) -> None:
        try:
            self._out = ctx.run(fn)
        except BaseException as e:  # noqa: BLE001 - handed to the caller by result()
            self._err = e

    def done(self) -> bool:
        return not self._thread.is_alive()

    def error(self) -> BaseException | None:
        """The job's exception once it has failed (None while it runs or when it succeeded)."""
        return self._err

    def result(self) -> Any:
        self._thread.join()
        if self._err is not None:
            raise self._err
        return self._out

    def cancel(self) -> None:
        """Ask the job to stop (it polls :attr:`stop`) and wait for it; its exception, if any, is dropped."""
        self.stop.set()
        self._thread.join()


def map_side_by_side(fn: Callable[[Any], Any], items, *, lanes: int, on_done: Callable[[], None] | None = None) -> list:
    """``[fn(x) for x in items]``, on ``lanes`` worker threads with one torch thread each when ``lanes`` ≥ 2
    (:func:`side_by_side_lanes`); results in the order of ``items``. ``on_done()`` runs in the caller's thread after
    each job. An exception cancels the jobs not yet started and is raised once the running ones have finished."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    items = list(items)
    if lanes <= 1 or len(items) <= 1:
        out = []
        for x in items:
            out.append(fn(x))
            if on_done is not None:
                on_done()
        return out
    with one_torch_thread_each(), ThreadPoolExecutor(min(int(lanes), len(items))) as pool:
        futures = [pool.submit(contextvars.copy_context().run, _as_lane(fn), x) for x in items]
        try:
            for f in as_completed(futures):
                f.result()
                if on_done is not None:
                    on_done()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return [f.result() for f in futures]
