"""Benchmark: sampling cost per image of the built-in generators on the same masks (docs/benchmarks.md).

Configurations (quick-preset networks, 64² phantom masks, one batch of ``--n`` masks):
DDPM-1000 (ancestral sampling over all steps), DDIM-50 (same DDPM network), LDM (DDIM-50 in the
16² latent space + decoding), FM at its default solver (midpoint, 10 steps = 20 evaluations).
Sampling cost does not depend on how well a network is trained, so each generator is fitted
for one step only (same code path as a real fit). Function evaluations (NFE) are counted with a
forward hook on the image network, not assumed. Target: FM ≥ 40× cheaper per sample than DDPM-1000.

Usage: python bench/bench_sampling.py [--n 4 --repeat 1 --write]
``--write`` replaces the "Sampling cost" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- sampling-cost:start -->", "<!-- sampling-cost:end -->"


def _fitted(name: str, train, **over):
    from cmraudit.generators.registry import get_generator_class

    cls = get_generator_class(name)
    gen = cls.from_preset("quick", steps=1, mask_steps=1, warmup_steps=0, device="cpu", **over)
    if name == "ldm":
        gen.set_params(ae_steps=1)
    return gen.fit(train, seed=0, progress=False)


def _warm_up(gen, masks: np.ndarray) -> None:
    keep = gen.get_params()
    if keep["sampler"] == "ddpm":  # DDPM ignores sampling_steps; a short DDIM run exercises the same network
        gen.set_params(sampler="ddim", sampling_steps=2)
    elif "ode_steps" in keep:
        gen.set_params(ode_steps=1)
    else:
        gen.set_params(sampling_steps=2)
    try:
        gen.sample(masks=masks, seed=99)
    finally:
        gen.set_params(**{k: keep[k] for k in ("sampler", "sampling_steps", "ode_steps") if k in keep})


def _measure(gen, masks: np.ndarray, *, repeat: int) -> dict:
    net = gen.image_modules_["image"]
    calls = {"n": 0}
    h = net.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    try:
        with torch.no_grad():  # warm-up (allocations, kernels): a few image-network evaluations, not counted
            _warm_up(gen, masks[:1])
        walls, cpus = [], []
        for r in range(repeat):
            calls["n"] = 0
            t0, c0 = time.perf_counter(), time.process_time()
            gen.sample(masks=masks, seed=r)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    finally:
        h.remove()
    n_batches = -(-len(masks) // int(gen.sample_batch_size))
    wall = min(walls)
    cpu = min(cpus)
    return {
        "nfe": calls["n"] // n_batches,
        "wall_s": wall,
        "s_per_image": wall / len(masks),
        "img_per_s": len(masks) / wall,
        "cpu_s_per_image": cpu / len(masks),
    }


def run(n: int, repeat: int, only: list[str] | None) -> list[dict]:
    from cmraudit.data.phantom import PhantomConfig, make_phantom

    train = make_phantom(PhantomConfig(subjects=4, slices=2, size=64), seed=0)
    masks = np.asarray(make_phantom(PhantomConfig(subjects=max(1, n // 2 + 1), slices=2, size=64), seed=1).masks[:n])
    configs = [
        ("DDPM-1000", "ddpm", {"sampler": "ddpm", "sampling_steps": 1000}),
        ("DDIM-50", "ddpm", {"sampler": "ddim", "sampling_steps": 50}),
        ("LDM (DDIM-50, latent 16²)", "ldm", {"sampler": "ddim", "sampling_steps": 50}),
        ("FM (midpoint × 10, default)", "fm", {}),
    ]
    rows = []
    for label, name, over in configs:
        if only and name not in only:
            continue
        gen = _fitted(name, train, **over)
        res = _measure(gen, masks, repeat=repeat)
        rows.append({"config": label, "generator": name, **res})
        print(f"{label:32s} NFE {res['nfe']:5d}  {res['s_per_image']:.3f} s/image  {res['img_per_s']:.2f} img/s  "
              f"CPU {res['cpu_s_per_image']:.3f} s/image", flush=True)
    base = next((r for r in rows if r["config"] == "DDPM-1000"), None)
    for r in rows:
        r["speedup_vs_ddpm1000"] = base["s_per_image"] / r["s_per_image"] if base else None
        r["cpu_speedup_vs_ddpm1000"] = base["cpu_s_per_image"] / r["cpu_s_per_image"] if base else None
    return rows


def section(rows: list[dict], args) -> str:
    load = os.getloadavg()[0]
    lines = [
        START,
        "## Sampling cost",
        "",
        f"`python bench/bench_sampling.py --n {args.n} --repeat {args.repeat}`: quick-preset networks, the same "
        f"{args.n} phantom "
        f"masks at 64² for every generator, one batch, CPU ({os.cpu_count()} cores shared with other jobs, 1-min load "
        "average "
        f"{load:.1f} at the end, torch {torch.__version__}, Python {platform.python_version()}). NFE = image-network "
        "evaluations "
        "per sample, counted by a forward hook; wall = wall time of the sampling call, CPU = CPU time of the process "
        "(less "
        "sensitive to other jobs); mask given, so stage 1 is not run; the LDM time includes decoding.",
        "",
        "| configuration | NFE | wall s / image | img / s | CPU s / image | cheaper than DDPM-1000 (wall / CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        sp = (
            f"{r['speedup_vs_ddpm1000']:.1f}× / {r['cpu_speedup_vs_ddpm1000']:.1f}×"
            if r["speedup_vs_ddpm1000"]
            else "—"
        )
        lines.append(
            f"| {r['config']} | {r['nfe']} | {r['s_per_image']:.3f} | {r['img_per_s']:.2f} | "
            f"{r['cpu_s_per_image']:.3f} | {sp} |"
        )
    fm = next((r for r in rows if r["generator"] == "fm"), None)
    if fm and fm["speedup_vs_ddpm1000"]:
        ok = min(fm["speedup_vs_ddpm1000"], fm["cpu_speedup_vs_ddpm1000"]) >= 40
        lines += [
            "",
            f"**FM vs DDPM-1000: {fm['speedup_vs_ddpm1000']:.1f}× (wall) / {fm['cpu_speedup_vs_ddpm1000']:.1f}× (CPU) "
            f"cheaper per sample — target ≥ 40× {'met' if ok else 'NOT met'}.**",
        ]
    lines += [
        "",
        f"Environment: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. Peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB. Target (DESIGN § 11): FM at ≤ 20 "
        "evaluations ≥ 40× cheaper per sample than 1000-step DDPM. Wall times on this shared machine vary with the "
        "load; "
        "the NFE ratio (1000 / 20 = 50×, same network size for DDPM and FM) is the load-independent part.",
        END,
    ]
    return "\n".join(lines)


def write(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in text and END in text:
        pre, rest = text.split(START, 1)
        text = pre + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4, help="masks (images) per configuration")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="generators to run (ddpm ldm fm)")
    ap.add_argument("--write", action="store_true", help="replace the 'Sampling cost' section of docs/benchmarks.md")
    args = ap.parse_args()
    rows = run(args.n, args.repeat, args.only)
    block = section(rows, args)
    print(block)
    if args.write:
        write(block)


if __name__ == "__main__":
    main()
