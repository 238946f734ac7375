"""Benchmark: DP-SGD step time vs non-private step time for the DDPM image-model network.

Network: MONAI DiffusionModelUNet (32, 64, 64), attention at the lowest level only, 1 res block,
5 input channels (noisy image + 4 one-hot mask channels), 64² images, batch 8 (the `quick` preset
size). Non-private: Adam step on the batch-mean ε-prediction loss. DP: the same through
``cmraudit.privacy.dp.make_private`` (Opacus hooks: per-sample gradients, per-patient clipping, noise),
with noise multiplicity k = 1 and k = 2. Steps are interleaved (A, B, C, A, B, C …) so machine load
affects all variants alike; the median over steps is reported, with peak RSS.

    python bench/bench_dp.py [--steps 10] [--write]   # --write updates the "DP-SGD" section of docs/benchmarks.md
"""
from __future__ import annotations

import argparse
import copy
import platform
import re
import resource
import statistics
import time
from pathlib import Path

import torch

from cmraudit.privacy.dp import DPConfig, dp_mean, make_private, multiplicity_loss

HEADING = "## DP-SGD"


def build_net():
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(spatial_dims=2, in_channels=5, out_channels=1, channels=(32, 64, 64),
                              attention_levels=(False, False, True), num_res_blocks=1, num_head_channels=32,
                              norm_num_groups=32)


class Slices(torch.utils.data.Dataset):
    def __init__(self, n, size, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, size, size, generator=g) * 2 - 1
        self.c = torch.nn.functional.one_hot(torch.randint(0, 4, (n, size, size), generator=g), 4).permute(0, 3, 1, 2).float()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.c[i]


def loss_fn(model, gen):
    def f(batch):
        x, c = batch
        t = torch.randint(0, 1000, (len(x),), generator=gen)
        noise = torch.randn(x.shape, generator=gen)
        abar = torch.cos(t.float() / 1000 * torch.pi / 2).clamp(min=1e-3).pow(2).view(-1, 1, 1, 1)
        out = model(torch.cat([abar.sqrt() * x + (1 - abar).sqrt() * noise, c], 1), timesteps=t)
        return (out - noise).pow(2).flatten(1).mean(1)
    return f


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    n_patients = 20 * args.batch
    ds = Slices(n_patients, args.size)
    batch = (ds.x[: args.batch], ds.c[: args.batch])  # fixed batch of exactly `batch` slices for every variant
    base = build_net()
    n_params = sum(p.numel() for p in base.parameters())

    plain = copy.deepcopy(base)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-4)
    variants = {"non-private": (plain, plain_opt, 1)}
    for k in (1, 2):
        net = copy.deepcopy(base)
        pt = make_private(module=net, optimizer=torch.optim.Adam(net.parameters(), lr=1e-4), dataset=ds,
                          patient_ids=list(range(n_patients)),
                          dp=DPConfig(epsilon=8.0, delta=1e-5, accountant="rdp", noise_multiplicity=k),
                          batch_size=args.batch, steps=10_000, seed=0)
        variants[f"DP-SGD k={k}"] = (pt.module, pt.optimizer, k)
    times = {name: [] for name in variants}
    gen = torch.Generator().manual_seed(1)
    for it in range(args.warmup + args.steps):
        for name, (model, opt, k) in variants.items():
            t0 = time.perf_counter()
            opt.zero_grad()
            dp_mean(multiplicity_loss(loss_fn(model, gen), batch, k=k)).backward()
            opt.step()
            if it >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    med = {n: statistics.median(v) for n, v in times.items()}
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [f"| {n} | {med[n]:.3f} | {min(times[n]):.3f} | {args.batch / med[n]:.1f} | {med[n] / med['non-private']:.2f}× |"
            for n in variants]
    table = "\n".join([
        "| variant | median s/step | min s/step | img/s | vs non-private |",
        "|---|---|---|---|---|", *rows])
    text = (
        f"{HEADING}\n\n"
        f"`python bench/bench_dp.py --steps {args.steps}` — MONAI DiffusionModelUNet (32, 64, 64), attention at the "
        f"lowest level only, 1 res block, {n_params / 1e6:.2f} M parameters, 5 input channels, {args.size}², batch "
        f"{args.batch}, Adam, CPU ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads), median of {args.steps} interleaved steps after {args.warmup} warm-up. "
        f"DP-SGD = Opacus hooks (per-sample gradients, per-patient clipping, Gaussian noise) through "
        f"`cmraudit.privacy.dp.make_private`; k = noise multiplicity (k forward passes per step). "
        f"Peak RSS of the whole benchmark: {rss_mb:.0f} MB. Target (DESIGN § 11): DP step ≤ 4× the non-private step.\n\n"
        f"{table}\n"
    )
    print(text)
    if args.write:
        path = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        old = path.read_text() if path.exists() else "# Benchmarks\n"
        pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
        new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
        path.write_text(new)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
