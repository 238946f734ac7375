"""Time the default privacy audit at the copy-detection issue's setting (issue 13, point 7).

Phantom 90 subjects × 5 slices × 2 phases at 64², split 50 train / 20 holdout / 20 novel patients; synthetic set =
400 slices (novel slices + 5 % copies under the copy transforms). Runs ``audit_privacy`` with its defaults
(pixel + domain spaces, the registered copy search, mask copies, GAN-Leaks and DOMIAS with 1000 patient-bootstrap
resamples) and prints the wall time of each step. ``python bench/bench_audit_setting.py [--threads N]``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        from cmraudit.device import set_cpu_threads

        set_cpu_threads(args.threads)
    from cmraudit.data import Dataset
    from cmraudit.data.copy_transforms import COPY_TRANSFORMS, plant_copies
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.privacy import audit_privacy

    load0 = os.getloadavg()
    ds = make_phantom(PhantomConfig(subjects=90, slices=5, size=64), seed=args.seed)
    rng = np.random.default_rng(args.seed)
    pats = np.unique(ds.patient_id.astype(str))
    rng.shuffle(pats)
    train, holdout, novel = (ds.select_patients(pats[a:b]) for a, b in ((0, 50), (50, 70), (70, 90)))
    n_copy = 20
    src = rng.choice(len(train), n_copy)
    copies = plant_copies(np.asarray(train.images), src, rng.choice(np.array(COPY_TRANSFORMS), n_copy), rng)
    pick = rng.choice(len(novel), 400 - n_copy)
    images = np.concatenate([np.asarray(novel.images)[pick], copies])
    masks = np.concatenate([np.asarray(novel.masks)[pick], np.asarray(train.masks)[src]])
    syn = Dataset(images=images, masks=masks, patient_id=np.array([f"syn-{i}" for i in range(400)], dtype=object),
                  source=np.full(400, "synthetic:bench", dtype=object))
    t = time.perf_counter()
    res = audit_privacy(train=train, holdout=holdout, synthetic=syn, seed=args.seed, progress=False)
    wall = time.perf_counter() - t
    cd = res.feature_spaces["registered"].copy_detection
    out = {
        "wall_s": round(wall, 2),
        "timings_s": res.info["timings_s"],
        "load_before": load0,
        "load_after": os.getloadavg(),
        "registered_copy_rate": cd["copy_rate"].to_dict(),
        "flagged": int(len(cd["flagged_indices"])),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
