"""Contention: quick mask-model training throughput idle and beside a fixed CPU-burning load (issue 18, point 1).

Each measurement runs in a fresh process: the quick preset's mask network (MONAI DiffusionModelUNet, channels
(32, 64, 64), attention at the lowest level, 4 one-hot channels at 32²), Adam, batch 8, ``--steps`` training steps after
3 warm-up steps. Modes:

* ``before``: the behaviour before cmraudit.cpu — torch's default threads (one per core) and OpenMP's default
  spin-wait (OMP_WAIT_POLICY unset);
* ``auto``: cmraudit's default — ``OMP_WAIT_POLICY=PASSIVE`` and ``configure_cpu()`` (CPUs available minus those
  other processes keep busy).

Load: ``--burners`` processes (default: one per CPU) spinning ``while True: pass`` for the whole measurement.
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
import cmraudit  # sets OMP_WAIT_POLICY=PASSIVE unless the environment has one
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
print(json.dumps({"mode": mode, "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                  "steps_per_s": steps / dt}))
"""


def measure(mode: str, steps: int) -> dict:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("CMRAUDIT_THREADS", None)
    if mode == "before":
        env["OMP_WAIT_POLICY"] = ""  # empty: libgomp's default (spin, then sleep); cmraudit's setdefault keeps it
    else:
        env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(steps)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    rows = []
    for loaded in (False, True):
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners if loaded else 0)]
        try:
            if loaded:
                time.sleep(1.0)
            for mode in ("before", "auto"):
                r = measure(mode, args.steps)
                r["load"] = f"{args.burners} burners" if loaded else "idle"
                r["loadavg"] = round(os.getloadavg()[0], 2)
                rows.append(r)
                print(json.dumps(r), flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    idle = {r["mode"]: r["steps_per_s"] for r in rows if r["load"] == "idle"}
    busy = {r["mode"]: r["steps_per_s"] for r in rows if r["load"] != "idle"}
    for m in ("before", "auto"):
        print(f"{m}: idle {idle[m]:.2f} steps/s, loaded {busy[m]:.2f} steps/s = {100 * busy[m] / idle[m]:.0f} % of idle")


if __name__ == "__main__":
    main()
