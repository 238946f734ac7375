"""Benchmark: fidelity and utility stages on the phantom at the sizes of ``cmraudit run --preset quick``.

Synthetic stand-in: 96 training slices with N(0, 0.02) noise (a near-copy, i.e. what a perfect
generator would give); paired stand-in: 32 test slices with the same noise. Times the fidelity
stage (pixel, radiomic, domain spaces, paired, diversity, mask plausibility) and the utility stage
(quick preset: real, synthetic, real+synthetic, cross-vendor A/B → C/D).

Usage: python bench/bench_fidelity_utility.py [--threads N] [--write]
``--write`` replaces the "Fidelity and utility" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADING = "## Fidelity and utility (issue 7)"


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from cmraudit.data.dataset import Dataset
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.data.splits import split_patients
    from cmraudit.fidelity import evaluate_fidelity
    from cmraudit.utility import evaluate_utility

    load0 = os.getloadavg()[0]
    ds = make_phantom(PhantomConfig(subjects=60), seed=0)
    parts = split_patients(ds, seed=0).apply(ds)
    train, holdout, test = parts["train"], parts["holdout"], parts["test"]
    rng = np.random.default_rng(0)
    rows = rng.choice(len(train), 96, replace=False)
    base = train.subset(rows)
    syn = Dataset(
        images=np.clip(base.images + rng.normal(0, 0.02, base.images.shape), -1, 1).astype(np.float32),
        masks=base.masks.copy(),
        patient_id=np.array([f"syn-{i}" for i in range(96)], object),
        vendor=base.vendor,
        spacing_mm=base.spacing_mm,
    )
    prow = np.sort(rng.choice(len(test), 32, replace=False))
    tp = test.subset(prow)
    paired = Dataset(images=np.clip(tp.images + rng.normal(0, 0.02, tp.images.shape), -1, 1).astype(np.float32),
                     masks=tp.masks.copy(), patient_id=np.array([f"pair-{i}" for i in range(32)], object),
                     meta={"test_rows": prow.tolist()})
    pool = Dataset.concat([train, holdout])
    fid, fw, fc = _timed(
        lambda: evaluate_fidelity(real=test, synthetic=syn, paired=paired, pool=pool, seed=0, progress=False)
    )
    uti, uw, uc = _timed(lambda: evaluate_utility(train=train, synthetic=syn, test=test, seed=0, progress=False))
    f, u = fid.to_dict(), uti.to_dict()

    def est(e):
        return (
            "skipped"
            if "status" in e
            else f"{e['value']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]"
            if e.get("ci")
            else f"{e['value']:.3f}"
        )

    lines = [
        f"`python bench/bench_fidelity_utility.py{' --threads ' + str(args.threads) if args.threads else ''}` — "
        "phantom 60 subjects at 64², "
        f"train {len(train)} / test {len(test)} slices, 96 synthetic (near-copy stand-in), 32 paired; "
        f"{os.cpu_count()} cores, 1-min load average {load0:.1f} at start (other jobs), torch threads "
        f"{torch.get_num_threads()}.",
        "",
        "| stage | wall s | CPU s |",
        "|---|---|---|",
        f"| fidelity (pixel, radiomic, domain, paired, diversity, masks) | {fw:.1f} | {fc:.1f} |",
        f"| utility quick (real, synthetic, real+synthetic, cross-vendor real) | {uw:.1f} | {uc:.1f} |",
        "",
        "Fidelity step times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in f["timings_s"].items()),
        "",
        "| space | Fréchet distance | KID | precision | recall | density | coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    for space, b in f["distribution"].items():
        if "status" in b:
            lines.append(f"| {space} | skipped: {b['reason']} | | | | | |")
        else:
            lines.append(
                f"| {space} | {b['frechet_distance']['value']:.4g} | {est(b['kid'])} | {est(b['precision'])} | "
                f"{est(b['recall'])} | {est(b['density'])} | {est(b['coverage'])} |"
            )
    lines += ["", "| utility regime | mean Dice [95 % CI] | mean HD95 mm | train s |", "|---|---|---|---|"]
    for r, b in u["regimes"].items():
        lines.append(f"| {r} | {est(b['mean_dice'])} | {est(b['mean_hd95_mm'])} | {b['train_time_s']:.1f} |")
    cv = u["cross_vendor"]
    if "regimes" in cv:
        for r, b in cv["regimes"].items():
            if "status" in b:
                lines.append(f"| cross-vendor {r} | skipped | | |")
            else:
                lines.append(
                    f"| cross-vendor {r} | {est(b['mean_dice'])} | {est(b['mean_hd95_mm'])} | "
                    f"{b.get('train_time_s', 0):.1f} |"
                )
    lines += ["", f"Peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB."]
    body = "\n".join(lines)
    print(body)
    if args.write:
        text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
        block = f"{HEADING}\n\n{body}\n"
        if HEADING in text:
            pre, rest = text.split(HEADING, 1)
            nxt = rest.find("\n## ")
            text = pre + block + (rest[nxt:] if nxt >= 0 else "")
        else:
            text = text.rstrip() + "\n\n" + block
        DOC.write_text(text)


if __name__ == "__main__":
    main()
