"""Benchmark: phantom generation speed (target: 100 subjects × 10 slices × 2 phases at 128² < 10 s on 2 cores).

Usage: python bench/bench_phantom.py [--subjects 100 --slices 10 --size 128 --repeat 3 --write]
``--write`` appends/replaces the "Phantom" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

from cmraudit.data.phantom import PHANTOM_VERSION, PhantomConfig, make_phantom

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def run(subjects: int, slices: int, size: int, repeat: int) -> dict:
    cfg = PhantomConfig(subjects=subjects, slices=slices, size=size)
    make_phantom(PhantomConfig(subjects=2, slices=2, size=size), seed=0)  # warm-up (imports, FFT plans)
    wall, cpu = [], []
    for r in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ds = make_phantom(cfg, seed=r)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "slices": len(ds),
        "size": size,
        "wall_s_best": min(wall),
        "wall_s_median": sorted(wall)[len(wall) // 2],
        "cpu_s_best": min(cpu),
        "slices_per_s": len(ds) / min(wall),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }


def section(res: dict, args) -> str:
    return (
        "## Phantom\n\n"
        f"`python bench/bench_phantom.py --subjects {args.subjects} --slices {args.slices} --size {args.size}` "
        f"(phantom v{PHANTOM_VERSION}, {res['slices']} slices at {res['size']}², best of {args.repeat}, "
        f"{res['cpus']} cores, 1-min load average {res['load_avg_1min']:.1f} from other jobs, Python "
        f"{platform.python_version()}).\n\n"
        "| metric | value |\n|---|---|\n"
        f"| wall time, best | {res['wall_s_best']:.2f} s |\n"
        f"| wall time, median | {res['wall_s_median']:.2f} s |\n"
        f"| CPU time of the process, best | {res['cpu_s_best']:.2f} s |\n"
        f"| throughput | {res['slices_per_s']:.0f} slices/s |\n"
        f"| peak RSS | {res['peak_rss_mb']:.0f} MB |\n\n"
        "Target (DESIGN § 4 / foundation issue): 100 subjects × 10 slices × 2 phases at 128² in < 10 s on 2 cores.\n"
        "Generation is single-threaded numpy (float32, one batch per subject); the arrays are built once per subject.\n"
    )


def write_section(text: str) -> None:
    old = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nMeasured figures, one section per component.\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == "## Phantom"), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" if end < len(lines) else "") + "".join(lines[end:])
    DOC.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subjects", type=int, default=100)
    ap.add_argument("--slices", type=int, default=10)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write the result into docs/benchmarks.md")
    args = ap.parse_args()
    res = run(args.subjects, args.slices, args.size, args.repeat)
    text = section(res, args)
    print(text)
    if args.write:
        write_section(text)
        print(f"written to {DOC}")


if __name__ == "__main__":
    main()
