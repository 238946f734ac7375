"""Measurement behind FM's default mask conditioning: concatenation vs a ControlNet branch.

Trains the quick-preset FM image model both ways with the same budget on the 64² phantom and
compares, on masks of unseen phantom subjects: training time per step, final velocity loss, and
how well the sampled images follow the mask (mean intensity per structure vs the real images,
LV − MYO contrast, paired PSNR against the real slice of the same mask).

Usage: python bench/bench_fm_conditioning.py [--steps 300 --threads 1 --only concat]
Prints one JSON line per variant (docs/generators.md records the result).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def run(conditioning: str, steps: int, seed: int) -> dict:
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit_fm import FMGenerator

    train = make_phantom(PhantomConfig(subjects=12, slices=4, size=64), seed=0)
    test = make_phantom(PhantomConfig(subjects=3, slices=4, size=64), seed=123)
    gen = FMGenerator.from_preset("quick", conditioning=conditioning, steps=steps, mask_steps=1, device="cpu")
    t0 = time.perf_counter()
    gen.fit(train, seed=seed, progress=False)
    fit_s = time.perf_counter() - t0
    syn = gen.sample(masks=np.asarray(test.masks), seed=1)
    im, real, m = np.asarray(syn.images), np.asarray(test.images), np.asarray(test.masks)
    means = {
        k: (float(im[m == v].mean()), float(real[m == v].mean()))
        for k, v in {"bg": 0, "RV": 1, "MYO": 2, "LV": 3}.items()
    }
    mse = ((im - real) ** 2).reshape(len(im), -1).mean(1)
    psnr = float(np.mean(10 * np.log10(4.0 / np.maximum(mse, 1e-12))))  # data range 2 ([-1, 1])
    n_params = sum(p.numel() for p in gen.image_modules_["image"].parameters())
    return {
        "conditioning": conditioning, "steps": steps, "params": n_params,
        "s_per_step": gen.training_["image"]["time_s"] / steps, "fit_s": fit_s,
        "loss_end": gen.training_["image"]["loss_end"],
        "structure_mean_abs_err": float(np.mean([abs(a - b) for a, b in means.values()])),
        "lv_minus_myo": means["LV"][0] - means["MYO"][0], "lv_minus_myo_real": means["LV"][1] - means["MYO"][1],
        "paired_psnr_db": psnr, "means_syn_real": means,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    ap.add_argument("--only", choices=["concat", "controlnet"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for c in [args.only] if args.only else ["concat", "controlnet"]:
        print(json.dumps(run(c, args.steps, args.seed)), flush=True)


if __name__ == "__main__":
    main()
