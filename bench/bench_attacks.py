"""Benchmark: every white-box membership attack on micro DDPM / FM models, with patient-bootstrap CIs and cost.

A phantom (``--subjects`` subjects × ``--slices`` slices at 32²) is split by patient 40/40/20; a micro generator
(channels (8, 16)) is trained ``--steps`` steps on the train patients (mask model 1 step: the attacks query the
image model), then the loss attack and each registered attack that the plugin's hooks allow score the train
patients (members) against the holdout patients (non-members; ``flow_gap`` takes a quarter of them as its
reference and scores the rest). Printed: patient-level AUC with 95 % CI, slice-level TPR at 1 % FPR, seconds
per slice. One line of JSON per (generator, seed, attack) is appended to ``--json`` as soon as it is measured.

    python bench/bench_attacks.py --generators ddpm,fm --steps 800 --subjects 50 --slices 4 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import nullcontext

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--generators", default="ddpm,fm")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--subjects", type=int, default=50)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from cmraudit.data.dataset import Dataset
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.data.splits import SplitFractions, split_patients
    from cmraudit.generators.registry import get_plugin
    from cmraudit.privacy.audit import _subsample_patients
    from cmraudit.privacy.mia.attacks import ATTACKS, get_attack, missing_hooks
    from cmraudit.privacy.mia.attacks.run import run_attacks
    from cmraudit.privacy.mia.metrics import evaluate_attack
    from cmraudit.privacy.mia.whitebox import loss_matrix, loss_scores

    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        ds = make_phantom(PhantomConfig(subjects=args.subjects, slices=args.slices, size=32), seed=seed)
        sp = split_patients(ds, seed=seed, fractions=SplitFractions(0.4, 0.4, 0.2)).apply(ds)
        train, holdout = sp["train"], sp["holdout"]
        for gname in args.generators.split(","):
            g = get_plugin(gname).cls.from_preset("micro", steps=args.steps, mask_steps=1, device="cpu")
            t0 = time.perf_counter()
            g.fit(train, seed=seed, progress=False)
            print(
                f"[{gname} seed {seed}] fit {args.steps} steps: {time.perf_counter() - t0:.1f} s; "
                f"{len(train)} member / {len(holdout)} non-member slices"
            )
            ev = dict(seed=seed, n_resamples=args.resamples)
            cand = Dataset.concat([train, holdout])
            member = np.r_[np.ones(len(train), bool), np.zeros(len(holdout), bool)]
            t0 = time.perf_counter()
            L = loss_matrix(g, cand, timesteps=(50, 150, 300, 500), seed=seed)
            res = {
                "loss": evaluate_attack(
                    "loss",
                    scores=loss_scores(L),
                    member=member,
                    groups=cand.patient_id.astype(str),
                    info={"seconds_per_slice": (time.perf_counter() - t0) / len(cand), "queries_per_slice": 4},
                    **ev,
                )
            }
            names = [n for n in ATTACKS if not missing_hooks(g, get_attack(n))]
            res.update(
                run_attacks(
                    names,
                    generator=g,
                    train=train,
                    holdout=holdout,
                    seed=seed,
                    cap=100_000,
                    subsample=_subsample_patients,
                    steps=lambda _: nullcontext(),
                    ev=ev,
                )
            )
            for name, r in res.items():
                d = r.to_dict()
                p, s = d["patient"], d["slice"]
                tpr = s["tpr_at_1pct_fpr"]
                row = {
                    "generator": gname,
                    "seed": seed,
                    "steps": args.steps,
                    "attack": name,
                    "patient_auc": p["auc"]["value"],
                    "patient_auc_ci": p["auc"]["ci"],
                    "slice_auc": s["auc"]["value"],
                    "slice_tpr_1pct": tpr.get("value") if "value" in tpr else None,
                    "slice_tpr_1pct_ci": tpr.get("ci"),
                    "seconds_per_slice": d["info"].get("seconds_per_slice"),
                    "queries_per_slice": d["info"].get("queries_per_slice"),
                }
                rows.append(row)
                if args.json:  # one line per result as it comes, so a long run keeps what it measured
                    with open(args.json, "a") as f:
                        f.write(json.dumps(row) + "\n")
                ci = ", ".join(f"{v:.2f}" for v in p["auc"]["ci"])
                t1 = "n/a" if row["slice_tpr_1pct"] is None else f"{row['slice_tpr_1pct']:.3f}"
                print(
                    f"  {name:16s} patient AUC {p['auc']['value']:.3f} [{ci}]  slice AUC {s['auc']['value']:.3f}  "
                    f"slice TPR@1%FPR {t1}  {1000 * row['seconds_per_slice']:.1f} ms/slice "
                    f"({row['queries_per_slice']} queries)"
                )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
