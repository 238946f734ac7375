"""Independent torch jobs side by side on the CPU (cmraudit.cpu.side_by_side_lanes), against one after the other.

On the quick run's phantom data, split and seed, each of three settings in this one process:

* ``one thread``: ``CMRAUDIT_SIDE_BY_SIDE=0``, torch at 1 thread (what ``--threads 1`` computes);
* ``two threads``: ``CMRAUDIT_SIDE_BY_SIDE=0``, torch at 2 threads (the behaviour before side by side);
* ``side by side``: torch at 2 threads, independent jobs on two worker threads with one thread each (the default).

Work: the quick preset's ``ddpm`` fit with ``--mask-steps`` mask-model and ``--image-steps`` image-model steps, and
the utility stage's four segmenters (real, synthetic, real+synthetic, cross-vendor real; ``--seg-iterations``
each; a 96-slice subset of the training slices stands in for the synthetic set). Reports wall times, the stages'
own times, and whether the fitted weights and the utility section equal those of the one-thread setting.

With ``--burners N`` every setting runs beside N processes spinning ``while True: pass`` (a busy machine). There
automatic threads (the CLI's default, cmraudit.cpu) chose ``one thread`` before session 20 and ``side by side`` since:
one-thread jobs never spin-wait on each other, so the lanes follow the CPUs available, not the load.

    python bench/bench_side_by_side.py [--mask-steps 150] [--image-steps 50] [--seg-iterations 100] [--burners 0]
                                       [--no-record]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

from _record import machine, record


def _fit(train, args):
    from cmraudit.generators.registry import get_generator_class

    gen = get_generator_class("ddpm").from_preset("quick", mask_steps=args.mask_steps, steps=args.image_steps)
    t0 = time.perf_counter()
    gen.fit(train, seed=0, progress=False)
    return time.perf_counter() - t0, gen


def _utility(train, test, args):
    from cmraudit.utility.evaluate import evaluate_utility

    syn = train.subset(np.arange(96))
    t0 = time.perf_counter()
    d = evaluate_utility(train=train, synthetic=syn, test=test, seed=0, iterations=args.seg_iterations,
                         progress=False).to_dict()
    wall = time.perf_counter() - t0
    d.pop("timings_s")
    for block in (d["regimes"], d["cross_vendor"].get("regimes", {})):
        for r in block.values():
            r.pop("train_time_s", None)
    return wall, d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mask-steps", type=int, default=150)
    ap.add_argument("--image-steps", type=int, default=50)
    ap.add_argument("--seg-iterations", type=int, default=100)
    ap.add_argument("--burners", type=int, default=0, help="processes spinning beside every setting")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    from cmraudit.cpu import ENV_SIDE_BY_SIDE
    from cmraudit.data.splits import split_patients
    from cmraudit.pipeline import load_data

    state = machine()
    ds, _ = load_data(None, preset="quick", seed=0)
    parts = split_patients(ds, seed=0).apply(ds)
    train, test = parts["train"], parts["test"]
    _fit(train, argparse.Namespace(mask_steps=2, image_steps=2))  # warm-up: imports, oneDNN kernels
    rows: list = []
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    try:
        _settings(train, test, args, rows)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    os.environ.pop(ENV_SIDE_BY_SIDE, None)
    base = rows[1]
    lines = [f"- {state}; torch {torch.__version__}; quick preset, phantom data and split of the quick run (seed 0)",
             *([f"- beside {_procs(args.burners)} spinning `while True: pass` (started after the load above)"]
               if args.burners else []),
             f"- fit: {args.mask_steps} mask-model + {args.image_steps} image-model steps; utility: four segmenters "
             f"× {args.seg_iterations} iterations", "",
             "| setting | fit wall | mask model | image model | utility wall | weights = one thread | "
             "utility = one thread |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, fit_s, m_s, i_s, u_s, sw, su in rows:
        lines.append(f"| {name} | {fit_s:.1f} s ({base[1] / fit_s:.2f}× two threads) | {m_s:.1f} s | {i_s:.1f} s | "
                     f"{u_s:.1f} s ({base[4] / u_s:.2f}×) | {'yes' if sw else 'no'} | {'yes' if su else 'no'} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        key = "side-by-side"
        title = "Independent jobs side by side vs one after the other (bench/bench_side_by_side.py)"
        if args.burners:
            key, title = (f"side-by-side-{args.burners}-burners", f"The same beside {_procs(args.burners)} "
                          f"spinning (bench/bench_side_by_side.py --burners {args.burners})")
        record(key, title, body)


def _procs(n: int) -> str:
    return f"{n} process{'es' if n != 1 else ''}"


def _settings(train, test, args, rows: list) -> None:
    from cmraudit.cpu import ENV_SIDE_BY_SIDE

    ref = None
    for name, threads, env in (("one thread", 1, "0"), ("two threads", 2, "0"), ("side by side", 2, "auto")):
        os.environ[ENV_SIDE_BY_SIDE] = env
        torch.set_num_threads(threads)
        fit_s, gen = _fit(train, args)
        util_s, util = _utility(train, test, args)
        weights = {**{f"m.{k}": v for k, v in gen.mask_model_.state_dict().items()},
                   **{f"i.{k}": v for k, v in gen.image_modules_["image"].state_dict().items()}}
        if ref is None:
            ref = (weights, util)
        same_w = all(torch.equal(weights[k], ref[0][k]) for k in weights)
        rows.append((name, fit_s, gen.training_["mask"]["time_s"], gen.training_["image"]["time_s"], util_s,
                     same_w, util == ref[1]))
        print(rows[-1], flush=True)


if __name__ == "__main__":
    main()
