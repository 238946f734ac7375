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
