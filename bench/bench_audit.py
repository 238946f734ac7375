"""Full black-box privacy audit: 10k synthetic vs 10k train + 10k holdout at 64² (docs/benchmarks.md).

    python bench/bench_audit.py [--n 10000] [--size 64] [--no-record]

Data: phantom slices (train / holdout / test patients disjoint); synthetic = copycat at 5 % (exact copies) with the
rest drawn from the test patients. The CLI's start-up (importing torch, choosing the CPU threads) runs first and is
reported, not timed. Audit: default feature spaces (pixel 32², domain encoder trained on train ∪ holdout),
copy detection, memorisation, masks, GAN-Leaks and DOMIAS with 1000 patient-bootstrap resamples. Data generation is
not timed. Writes wall time per step and peak RSS to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _record import machine, peak_rss_mb, record


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.generators.reference import CopycatGenerator
    from cmraudit.privacy import audit_privacy

    per_subject = 8 * 2
    subjects = int(np.ceil(3 * a.n / per_subject))
    t = time.perf_counter()
    ds = make_phantom(PhantomConfig(subjects=subjects, slices=8, size=a.size), seed=0)
    pats = np.unique(ds.patient_id.astype(str))
    third = len(pats) // 3
    train = ds.select_patients(pats[:third]).subset(np.arange(a.n))
    holdout = ds.select_patients(pats[third : 2 * third]).subset(np.arange(a.n))
    test = ds.select_patients(pats[2 * third :])
    syn = CopycatGenerator(rate=0.05).fit(train, seed=0, reference=test).sample(n=a.n, seed=1)
    del ds, test  # keep only what the audit reads (peak RSS should be the audit's)
    t_data = time.perf_counter() - t
    t = time.perf_counter()
    from cmraudit.cpu import configure_cpu

    threads = configure_cpu()  # what the CLI does at start-up (imports torch, sets the thread budget); not timed
    t_setup = time.perf_counter() - t
    t = time.perf_counter()
    c0 = time.process_time()
    res = audit_privacy(
        train=train, holdout=holdout, synthetic=syn, seed=0, progress=True, features=("pixel", "domain")
    )
    t_audit = time.perf_counter() - t
    cpu_audit = time.process_time() - c0
    d = res.to_dict()
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in res.info["timings_s"].items())
    cr = d["feature_spaces"]["pixel"]["copy_detection"]["copy_rate"]
    lines = [
        f"- data: {len(syn)} synthetic vs {len(train)} train + {len(holdout)} holdout slices at {a.size}² "
        f"(phantom, generated in {t_data:.0f} s, not timed); {machine()}",
        f"- start-up as in the CLI (import torch, {threads} CPU threads): {t_setup:.1f} s, not timed",
        "- full black-box audit (pixel + domain spaces, masks, GAN-Leaks × 2, DOMIAS, 1000 bootstrap resamples): "
        f"**{t_audit:.1f} s wall**, "
        f"{cpu_audit:.1f} s CPU time of the process (user + system, all threads)",
        f"- steps: {steps}",
        f"- peak RSS of the process: {peak_rss_mb():.0f} MB",
        f"- sanity: planted 5 % exact copies → pixel copy rate {cr['value']:.4f} [{cr['ci'][0]:.4f}, "
        f"{cr['ci'][1]:.4f}]",
    ]
    body = "\n".join(lines)
    print(body)
    if not a.no_record:
        record("privacy-audit", "Full black-box audit at 64² (bench/bench_audit.py)", body)


if __name__ == "__main__":
    main()
