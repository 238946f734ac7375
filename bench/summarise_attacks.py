"""Markdown table of ``bench/bench_attacks.py --json`` output: one row per (generator, attack), seeds side by side.

    python bench/summarise_attacks.py bench/results/attacks.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = defaultdict(dict)
    for r in rows:
        by[(r["generator"], r["attack"])][r["seed"]] = r
    seeds = sorted({r["seed"] for r in rows})
    head = " | ".join(f"seed {s}" for s in seeds)
    print(f"| generator | attack | queries / slice | patient AUC [95 % CI]: {head} | mean | mean Δ vs loss "
          "| slice TPR@1 % FPR, mean | ms / slice, mean |")
    print("|---|---|---|" + "---|" * len(seeds) + "---|---|---|---|")
    for (g, a), d in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1] != "loss", kv[0][1])):
        cells = [f"{d[s]['patient_auc']:.3f} [{d[s]['patient_auc_ci'][0]:.2f}, {d[s]['patient_auc_ci'][1]:.2f}]"
                 if s in d else "—" for s in seeds]
        auc = np.array([d[s]["patient_auc"] for s in seeds if s in d])
        base = by.get((g, "loss"), {})
        delta = np.array([d[s]["patient_auc"] - base[s]["patient_auc"] for s in seeds if s in d and s in base])
        tpr = [d[s]["slice_tpr_1pct"] for s in seeds if s in d and d[s]["slice_tpr_1pct"] is not None]
        ms = np.mean([1000 * d[s]["seconds_per_slice"] for s in seeds if s in d])
        print(f"| {g} | `{a}` | {d[seeds[0]]['queries_per_slice'] if seeds[0] in d else '—'} | " + " | ".join(cells)
              + f" | {auc.mean():.3f} | {delta.mean():+.3f} | {np.mean(tpr):.3f} | {ms:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1])
