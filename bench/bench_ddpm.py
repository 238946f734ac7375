"""Benchmark: DDPM image model training and sampling throughput vs a plain MONAI loop.

Same network (MONAI DiffusionModelUNet, quick preset: channels (32, 64, 64), attention at
the lowest level, 1 res block, 5 input channels = noisy image + 4 one-hot mask channels),
same batch and image size. "plain MONAI" is the textbook loop: DDPMScheduler.add_noise,
Adam, MSE on ε, no EMA, no clipping. "cmraudit" is cmraudit.generators.training.train_loop
with the DDPM plugin's step loss (AdamW + warm-up/cosine, grad clipping, EMA, stateless RNG).

    python bench/bench_ddpm.py [--steps 30] [--batch 8] [--size 64] [--write docs/benchmarks.md]

Reports images per second (training: batch × steps / wall time after warm-up steps;
sampling: images / wall time of DDIM-50) and peak RSS. Numbers depend on the load of the
machine: the load average at start is printed beside them.
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

from cmraudit.generators.diffusion import UNetSpec, build_unet, onehot
from cmraudit.generators.training import TrainConfig, seeded, train_loop
from cmraudit.testing.toy import make_toy_dataset

MARK_BEGIN = "<!-- bench_ddpm:begin -->"
MARK_END = "<!-- bench_ddpm:end -->"


def _data(n: int, size: int):
    ds = make_toy_dataset(n_patients=max(2, n // 4), slices=4, size=size)
    return torch.from_numpy(np.array(ds.images))[:, None], onehot(np.asarray(ds.masks))


def _net(seed: int = 0):
    with seeded(seed):
        return build_unet(UNetSpec((32, 64, 64), (False, False, True), 1, 32, 32), in_channels=5, out_channels=1)


def bench_plain_monai(images, masks, *, steps: int, batch: int, warmup: int) -> float:
    from monai.networks.schedulers import DDPMScheduler

    net = _net()
    sched = DDPMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0005, beta_end=0.0195)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    net.train()
    t0 = None
    for s in range(steps + warmup):
        if s == warmup:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(images), (batch,), generator=g)
        x0, m = images[idx], masks[idx]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        xt = sched.add_noise(original_samples=x0, noise=noise, timesteps=t)
        loss = torch.nn.functional.mse_loss(net(torch.cat([xt, m], 1), timesteps=t), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def bench_cmraudit(images, masks, *, steps: int, batch: int, warmup: int) -> float:
    from cmraudit_ddpm import DDPMGenerator

    gen = DDPMGenerator.from_preset("quick", batch_size=batch)
    net = _net()
    marks = {}

    def step_loss(model, idx, g):
        i = torch.as_tensor(idx)
        return gen.image_step_loss(model, images[i], masks[i], None, g)

    def cb(step, loss):
        if step == warmup:
            marks["t0"] = time.perf_counter()

    train_loop(
        net,
        step_loss,
        n_items=len(images),
        config=TrainConfig(steps=steps + warmup, batch_size=batch, lr=1e-4, warmup_steps=5),
        seed=0,
        device=torch.device("cpu"),
        progress=False,
        callback=cb,
    )
    return steps * batch / (time.perf_counter() - marks["t0"])


def bench_sampling(masks, *, n: int, ddim_steps: int) -> tuple[float, float]:
    """(images/s with DDIM-``ddim_steps``, seconds per network evaluation at batch n)."""
    from cmraudit_ddpm import DDPMGenerator

    gen = DDPMGenerator.from_preset("quick", sampling_steps=ddim_steps, sample_batch_size=n)
    gen.image_modules_ = {"image": _net().eval()}
    t0 = time.perf_counter()
    gen.sample_images(masks[:n], labels=None, seed=0, device=torch.device("cpu"))
    dt = time.perf_counter() - t0
    return n / dt, dt / ddim_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--sample-n", type=int, default=16)
    ap.add_argument(
        "--write", type=Path, default=None, help="Update this markdown file between the bench_ddpm markers."
    )
    args = ap.parse_args()
    load = os.getloadavg()[0]
    images, masks = _data(64, args.size)
    plain = bench_plain_monai(images, masks, steps=args.steps, batch=args.batch, warmup=args.warmup)
    ours = bench_cmraudit(images, masks, steps=args.steps, batch=args.batch, warmup=args.warmup)
    sps, per_eval = bench_sampling(masks, n=args.sample_n, ddim_steps=50)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("training, plain MONAI loop", f"{plain:.1f} img/s"),
        ("training, cmraudit train_loop (AdamW, clip, EMA)", f"{ours:.1f} img/s ({ours / plain:.2f}× plain)"),
        (
            f"sampling DDIM-50, batch {args.sample_n}",
            f"{sps:.2f} img/s ({per_eval * 1000:.0f} ms per network evaluation)",
        ),
        ("sampling DDPM-1000 (estimated from the same evaluations)", f"{args.sample_n / (per_eval * 1000):.3f} img/s"),
        ("peak RSS", f"{rss:.0f} MB"),
    ]
    text = "\n".join(
        [
            MARK_BEGIN,
            "## DDPM image model (issue 3, `bench/bench_ddpm.py`)",
            "",
            f"Network: DiffusionModelUNet (32, 64, 64), attention at the lowest level, 1 res block, 5 input channels; "
            f"{args.size}² px, batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up steps; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average at start {load:.1f} "
            "(the machine is shared; at load ≫ cores the absolute numbers are several times worse than on an idle "
            "machine, the ratio is what matters).",
            "",
            "| measurement | result |",
            "|---|---|",
            *[f"| {a} | {b} |" for a, b in rows],
            MARK_END,
        ]
    )
    print(text)
    if args.write:
        old = args.write.read_text() if args.write.exists() else "# Benchmarks\n"
        if MARK_BEGIN in old and MARK_END in old:
            new = old.split(MARK_BEGIN)[0] + text + old.split(MARK_END, 1)[1]
        else:
            new = old.rstrip("\n") + "\n\n" + text + "\n"
        args.write.write_text(new)


if __name__ == "__main__":
    main()
