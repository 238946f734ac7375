"""CPU threads that fit the machine (cmraudit.cpu): quota, affinity and current load."""
from __future__ import annotations

import os
import subprocess
import sys

from cmraudit import cpu


def test_available_cpus_respects_affinity_and_quota(monkeypatch):
    n = cpu.available_cpus()
    assert n >= 1 and n <= (os.cpu_count() or 1)
    monkeypatch.setattr(cpu, "_cgroup_quota", lambda: 1.5)
    assert cpu.available_cpus() == 1
    monkeypatch.setattr(cpu, "_cgroup_quota", lambda: None)
    assert cpu.available_cpus() == n


def test_busy_cpus_sees_a_burning_process():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = cpu.busy_cpus(0.5)
        assert busy >= 0.7, busy  # one process spinning on one CPU (others may add to it)
        threads = cpu.auto_threads(0.5)
        assert threads >= 1 and threads <= cpu.available_cpus()
        if cpu.available_cpus() <= 2:
            assert cpu.auto_threads(0.5) == 1  # a 2-CPU machine with one CPU taken leaves one thread
    finally:
        burner.kill()
        burner.wait()


def test_map_side_by_side_keeps_order_runs_on_one_thread_each_and_restores_the_budget():
    import threading

    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[tuple[int, int, str]] = []

        def job(x):
            seen.append((x, torch.get_num_threads(), threading.current_thread().name))
            return x * x

        done: list[int] = []
        assert cpu.map_side_by_side(job, range(5), lanes=2, on_done=lambda: done.append(1)) == [0, 1, 4, 9, 16]
        assert len(done) == 5 and all(t == 1 for _, t, _ in seen)
        assert all(name != threading.main_thread().name for _, _, name in seen)
        assert torch.get_num_threads() == 2
        seen.clear()
        assert cpu.map_side_by_side(job, range(3), lanes=1) == [0, 1, 4]  # one lane: here, on the full budget
        assert [t for _, t, _ in seen] == [2, 2, 2] and {name for *_, name in seen} == {threading.main_thread().name}
    finally:
        torch.set_num_threads(n)


def test_map_side_by_side_raises_the_first_failure_after_the_running_jobs():
    import time

    import pytest

    finished: list[int] = []

    def job(x):
        if x == 1:
            raise ValueError("job 1 failed")
        time.sleep(0.5)
        finished.append(x)
        return x

    with pytest.raises(ValueError, match="job 1 failed"):
        cpu.map_side_by_side(job, range(6), lanes=2)
    assert 0 in finished and len(finished) < 5  # the running job ended; jobs not yet started were cancelled


def test_beside_returns_or_raises_in_the_caller():
    import contextvars

    import pytest

    var = contextvars.ContextVar("v", default="unset")
    var.set("caller's")
    job = cpu.Beside(lambda: var.get(), name="test")
    assert job.result() == "caller's"  # the caller's context variables reach the worker
    bad = cpu.Beside(lambda: 1 / 0, name="test")
    with pytest.raises(ZeroDivisionError):
        bad.result()
    assert isinstance(bad.error(), ZeroDivisionError) and bad.done()


def test_busy_cpus_leaves_out_this_process(monkeypatch):
    """CPU time of this process's own threads is not "another process" (refresh_threads measures mid-run)."""
    import time

    clock = {"wall": 100.0, "own": 5.0}
    stat = iter([(1000.0, 600.0), (1200.0, 700.0)])  # over the sample: 200 ticks on all CPUs, 100 of them idle
    monkeypatch.setattr(cpu, "_cpu_times", lambda: next(stat))
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 2)

    def sleep(s):
        clock["wall"] += s
        clock["own"] += own_rate * s

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(time, "process_time", lambda: clock["own"])
    own_rate = 1.0  # this process kept one CPU busy: nothing else runs
    assert cpu.busy_cpus(0.5) == 0.0
    stat = iter([(1000.0, 600.0), (1200.0, 700.0)])
    own_rate = 0.25  # a quarter of a CPU was ours: the other three quarters are another process's
    assert abs(cpu.busy_cpus(0.5) - 0.75) < 1e-9


def test_lanes_under_automatic_threads_use_the_available_cpus_whatever_the_load(monkeypatch):
    import torch

    dev = torch.device("cpu")
    n = torch.get_num_threads()
    monkeypatch.setattr(cpu, "available_cpus", lambda: 2)
    monkeypatch.setattr(cpu, "_DEFAULT", 2)
    try:
        torch.set_num_threads(1)  # automatic threads chose one: another process kept a CPU busy at start-up
        monkeypatch.setattr(cpu, "_MODE", "auto")
        assert cpu.lane_budget() == 2 and cpu.side_by_side_lanes(dev, 4) == 2
        with cpu.one_torch_thread_each():  # no lanes inside a job
            assert cpu.side_by_side_lanes(dev, 4) == 1
        assert cpu.map_side_by_side(lambda _: cpu.side_by_side_lanes(dev, 4), range(3), lanes=2) == [1, 1, 1]
        job = cpu.Beside(lambda: cpu.side_by_side_lanes(dev, 4), name="t")
        assert job.result() == 1
        assert cpu.side_by_side_lanes(dev, 4) == 2  # the caller's context is unchanged
        monkeypatch.setattr(cpu, "_MODE", "explicit")  # --threads 1: one CPU, one lane
        assert cpu.lane_budget() == 1 and cpu.side_by_side_lanes(dev, 4) == 1
        monkeypatch.setattr(cpu, "_MODE", None)  # library use: the caller's torch setting
        torch.set_num_threads(2)
        assert cpu.side_by_side_lanes(dev, 4) == 2
    finally:
        torch.set_num_threads(n)


def test_refresh_threads_follows_the_load_only_under_automatic_threads(monkeypatch):
    import torch

    n = torch.get_num_threads()
    applied: list[int] = []

    def fake_set(k):
        applied.append(int(k))
        torch.set_num_threads(int(k))

    monkeypatch.setattr(cpu, "_apply_threads", fake_set)
    monkeypatch.setattr(cpu, "_DEFAULT", 2)
    free = [2]
    monkeypatch.setattr(cpu, "auto_threads", lambda sample_s=0.25: free[0])
    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(cpu, "_MODE", "explicit")
        assert cpu.refresh_threads() == 1 and applied == []  # --threads is kept
        monkeypatch.setattr(cpu, "_MODE", None)
        assert cpu.refresh_threads() == 1 and applied == []  # library use: untouched
        monkeypatch.setattr(cpu, "_MODE", "auto")
        assert cpu.refresh_threads() == 2 and applied == [2]  # the start-up load has gone
        free[0] = 1
        assert cpu.refresh_threads() == 1 and applied == [2, 1]  # a load has come
        assert cpu.refresh_threads() == 1 and applied == [2, 1]  # unchanged: the pools are not touched
        free[0] = 8
        assert cpu.refresh_threads() == 2  # never above torch's own default
    finally:
        torch.set_num_threads(n)


def test_refresh_threads_never_raises_a_pool_above_its_own_setting(monkeypatch):
    """A user's OPENBLAS_NUM_THREADS=1 stays 1 when a stage finds the machine idle again (torch's default cannot
    see it); pools first seen later keep their own count as their cap."""
    import faiss
    import torch

    class Pool:
        def __init__(self, path, n):
            self.filepath, self.num_threads = path, n

        def set_num_threads(self, n):
            self.num_threads = n

    user_one, plain = Pool("openblas-user", 1), Pool("openblas-plain", 2)
    pools = [user_one, plain]
    monkeypatch.setattr(cpu, "_pools", lambda: list(pools))
    monkeypatch.setattr(cpu, "_POOL_CAP", {})
    monkeypatch.setattr(cpu, "_DEFAULT", 2)
    monkeypatch.setattr(cpu, "_MODE", "auto")
    n, nf = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        cpu._remember_pools()  # configure_cpu, at start-up
        plain.num_threads = 1  # lowered under a moment of load
        late = Pool("loaded-later", 2)
        pools.append(late)
        torch.set_num_threads(1)
        monkeypatch.setattr(cpu, "auto_threads", lambda sample_s=0.25: 2)
        assert cpu.refresh_threads() == 2
        assert (user_one.num_threads, plain.num_threads, late.num_threads) == (1, 2, 2)
        monkeypatch.setattr(cpu, "auto_threads", lambda sample_s=0.25: 1)
        assert cpu.refresh_threads() == 1 and (user_one.num_threads, plain.num_threads, late.num_threads) == (1, 1, 1)
    finally:
        torch.set_num_threads(n)
        faiss.omp_set_num_threads(nf)


def test_a_cli_command_leaves_no_automatic_threads_behind(monkeypatch):
    """After an in-process ``cmraudit`` call on automatic threads, library use keeps its own torch setting."""
    import torch

    from cmraudit.cli.main import main

    monkeypatch.delenv("CMRAUDIT_THREADS", raising=False)
    monkeypatch.setattr(cpu, "_MODE", None)
    monkeypatch.setattr(cpu, "_DEFAULT", cpu._DEFAULT)  # restored afterwards
    monkeypatch.setattr(cpu, "_AUTO", 1024)  # measured once per process: no 0.25 s sample here, nothing lowered
    n = torch.get_num_threads()
    try:
        assert main(["generators", "list"]) == 0
        torch.set_num_threads(1)
        assert cpu.side_by_side_lanes(torch.device("cpu"), 4) == 1
        assert cpu.refresh_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(n)
