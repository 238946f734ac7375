"""Contention: quick mask-model training throughput idle and beside a fixed CPU-burning load (issue 18, point 1).

Each measurement runs in a fresh process: the quick preset's mask network (MONAI DiffusionModelUNet, channels
(32, 64, 64), attention at the lowest level, 4 one-hot channels at 32²), Adam, batch 8, ``--steps`` training steps after
3 warm-up steps. Modes:

* ``before``: the behaviour before cmraudit.cpu — torch's default threads (one per core);
* ``auto``: cmraudit's default — ``configure_cpu()`` (CPUs available minus those other processes keep busy).

Loads: idle, then 1 and ``--burners`` (default: one per CPU) processes spinning ``while True: pass``.
``python bench/bench_contention.py [--steps 30] [--burners N]`` prints steps/s per mode and load, and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, os, sys, time
mode, steps = sys.argv[1], int(sys.argv[2])
import torch
from cmraudit.cpu import configure_cpu
from cmraudit.generators.diffusion import UNetSpec, build_unet
if mode == "auto":
    configure_cpu(None)
torch.manual_seed(0)
net = build_unet(UNetSpec(channels=(32, 64, 64), attention_levels=(False, False, True)), in_channels=4, out_channels=4)
opt = torch.optim.Adam(net.parameters(), 1e-4)
x = torch.randn(8, 4, 32, 32)
t = torch.randint(0, 1000, (8,))
def step():
    opt.zero_grad()
    loss = ((net(x, timesteps=t) - x) ** 2).mean()
    loss.backward()
    opt.step()
for _ in range(3):
    step()
t0 = time.perf_counter()
for _ in range(steps):
    step()
dt = time.perf_counter() - t0
print(json.dumps({"mode": mode, "threads": torch.get_num_threads(), "omp_wait_policy":
os.environ.get("OMP_WAIT_POLICY"),
                  "steps_per_s": steps / dt}))
"""


def measure(mode: str, steps: int) -> dict:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("CMRAUDIT_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(steps)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    rows = []
    for burners in sorted({0, 1, args.burners}):
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
        try:
            if burners:
                time.sleep(1.0)
            for mode in ("before", "auto"):
                r = measure(mode, args.steps)
                r["burners"] = burners
                r["loadavg"] = round(os.getloadavg()[0], 2)
                rows.append(r)
                print(json.dumps(r), flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    best_idle = max(r["steps_per_s"] for r in rows if r["burners"] == 0)
    print("| burners | before: threads, steps/s (% of best idle) | auto: threads, steps/s (% of best idle) |")
    print("| --- | --- | --- |")
    for b in sorted({r["burners"] for r in rows}):
        cells = [f"{r['threads']}, {r['steps_per_s']:.2f} ({100 * r['steps_per_s'] / best_idle:.0f} %)"
                 for m in ("before", "auto") for r in rows if r["burners"] == b and r["mode"] == m]
        print(f"| {b} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
