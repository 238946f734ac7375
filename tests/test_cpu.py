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
