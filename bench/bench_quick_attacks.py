"""The registered attacks on a quick-preset model through ``cmraudit audit`` (issue 19's quick-preset check).

A phantom at the quick preset's 64² is split by patient 40/40/20; the quick DDPM (its architecture and schedule)
is trained ``--steps`` image steps (``--mask-steps`` mask steps; the preset's 4000/800 take most of an hour on
2 CPU cores, the attacks need the image network, not a converged one), saved, sampled, and then audited with
``cmraudit audit --attacks pia,secmi,sima,conditional_gap,grad_norm --model``. Checked and printed: every attack
has its block in report.json, its patient ROC curve in the report, and the seconds per slice.

    python bench/bench_quick_attacks.py --out /tmp/quick-attacks --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ATTACKS = ("pia", "secmi", "sima", "conditional_gap", "grad_norm")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--mask-steps", type=int, default=100)
    ap.add_argument("--subjects", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    from cmraudit.cli.main import main as cli
    from cmraudit.data.dataset import write_dataset
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.data.splits import SplitFractions, split_patients
    from cmraudit.generators.registry import get_plugin
    from cmraudit.report.html import render_html
    from cmraudit.report.walk import roc_curves

    out = Path(args.out)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    ds = make_phantom(PhantomConfig(subjects=args.subjects, slices=4, size=64), seed=args.seed)
    sp = split_patients(ds, seed=args.seed, fractions=SplitFractions(0.4, 0.4, 0.2)).apply(ds)
    g = get_plugin("ddpm").cls.from_preset("quick", steps=args.steps, mask_steps=args.mask_steps, device="cpu")
    t0 = time.perf_counter()
    g.fit(sp["train"], seed=args.seed, progress=False)
    fit_s = time.perf_counter() - t0
    g.save(out / "run" / "model")
    syn = g.sample(n=16, seed=args.seed + 1)
    for name, d in (("train", sp["train"]), ("holdout", sp["holdout"]), ("synthetic", syn)):
        write_dataset(d, out / name, overwrite=True)
    t0 = time.perf_counter()
    rc = cli(["-q", "audit", "--train", str(out / "train"), "--holdout", str(out / "holdout"), "--synthetic",
              str(out / "synthetic"), "--model", str(out / "run"), "--feature", "pixel", "--resamples", "200",
              "--attacks", ",".join(ATTACKS), "--out", str(out / "audit")])
    audit_s = time.perf_counter() - t0
    rep = json.loads((out / "audit" / "report.json").read_text())
    render_html(out / "audit")  # what `cmraudit report OUT/audit` does
    html = (out / "audit" / "report.html").read_text()
    curves = roc_curves(rep["privacy"])["patient"]
    print(f"quick ddpm, {args.steps} image / {args.mask_steps} mask steps, {len(sp['train'])} member and "
          f"{len(sp['holdout'])} non-member slices at 64²: fit {fit_s:.0f} s, audit {audit_s:.0f} s, exit {rc}")
    for a in ATTACKS:
        b = rep["privacy"]["mia"][a]
        auc = b["patient"]["auc"]
        print(f"  {a:16s} block yes, ROC {'yes' if a in curves else 'NO'}; patient AUC {auc['value']:.3f} "
              f"[{auc['ci'][0]:.2f}, {auc['ci'][1]:.2f}], {1000 * b['info']['seconds_per_slice']:.0f} ms/slice "
              f"({b['info']['queries_per_slice']} queries)")
        assert a in curves, a
    assert "ROC" in html
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
