"""Benchmark: DP-SGD step time vs non-private step time for the DDPM image-model network.

Network: MONAI DiffusionModelUNet (32, 64, 64), attention at the lowest level only, 1 res block,
5 input channels (noisy image + 4 one-hot mask channels), 64² images, batch 8 (the `quick` preset
size). Non-private: Adam step on the batch-mean ε-prediction loss. DP: the same through
``cmraudit.dp.make_private`` (Opacus hooks: per-sample gradients, per-patient clipping, noise),
with noise multiplicity k = 1 and k = 2. Steps are interleaved (A, B, C, A, B, C …) so machine load
affects all variants alike; the median over steps is reported, with peak RSS.

    python bench/bench_dp.py [--steps 10] [--write]   # --write updates the "DP-SGD" section of docs/benchmarks.md
    python bench/bench_dp.py --multiplicity [--train-steps 60] [--seeds 3]  # does noise multiplicity help?

The ``--multiplicity`` experiment trains a micro UNet (8, 16) at 32² (``--mult-size``) on hand-made disc slices under
DP (ε = 8, δ = 1e-3, 24 patients × 4 slices, 6 expected patients per step) with k = 1 and k = 4 at
*equal ε* (same σ, q, steps), and reports (a) the cosine between one privatised step gradient and a
reference full-data, many-draw gradient at initialisation, (b) the final diffusion loss on a fixed
evaluation set of (slice, t, noise) draws.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import re
import resource
import statistics
import time
from pathlib import Path

import torch

from cmraudit.dp import DPConfig, dp_mean, make_private, multiplicity_loss

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
        self.c = (
            torch.nn.functional.one_hot(torch.randint(0, 4, (n, size, size), generator=g), 4)
            .permute(0, 3, 1, 2)
            .float()
        )

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


def _disc_slices(n_patients, slices, size, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2
    r = np.hypot(yy, xx)
    imgs, masks, pids = [], [], []
    for p in range(n_patients):
        rad = rng.uniform(4, 8)
        for s in range(slices):
            lv = r < rad * (1 - 0.05 * s)
            myo = (r >= rad * (1 - 0.05 * s)) & (r < rad * (1 - 0.05 * s) + 2.5)
            rv = (np.hypot(yy, xx + rad + 5) < rad) & ~lv & ~myo
            m = np.zeros((size, size), np.int64)
            m[rv], m[myo], m[lv] = 1, 2, 3
            img = np.where(lv, 0.8, np.where(myo, -0.3, np.where(rv, 0.6, -0.8)))
            imgs.append(img + 0.05 * rng.standard_normal((size, size)))
            masks.append(m)
            pids.append(p)
    ds = Slices(1, size)
    ds.x = torch.tensor(np.array(imgs), dtype=torch.float32)[:, None]
    ds.c = torch.nn.functional.one_hot(torch.tensor(np.array(masks)), 4).permute(0, 3, 1, 2).float()
    return ds, pids


def multiplicity_experiment(*, train_steps, seeds, size=32, ks=(1, 4)):
    from monai.networks.nets import DiffusionModelUNet

    ds, pids = _disc_slices(24, 4, size, seed=0)
    eval_gen = torch.Generator().manual_seed(123)
    eval_draws = [(torch.randint(0, 1000, (len(ds),), generator=eval_gen), torch.randn(ds.x.shape, generator=eval_gen))
                  for _ in range(4)]

    def eval_loss(model):
        model.eval()
        with torch.no_grad():
            tot = 0.0
            for t, noise in eval_draws:
                abar = torch.cos(t.float() / 1000 * torch.pi / 2).clamp(min=1e-3).pow(2).view(-1, 1, 1, 1)
                out = model(torch.cat([abar.sqrt() * ds.x + (1 - abar).sqrt() * noise, ds.c], 1), timesteps=t)
                tot += float((out - noise).pow(2).mean())
        model.train()
        return tot / len(eval_draws)

    def micro():
        return DiffusionModelUNet(spatial_dims=2, in_channels=5, out_channels=1, channels=(8, 16),
                                  attention_levels=(False, False), num_res_blocks=1, norm_num_groups=8)

    results = {k: {"cos": [], "final": [], "initial": [], "sec": []} for k in ks}
    for seed in range(seeds):
        torch.manual_seed(seed)
        init = micro()
        # reference gradient: full data, 8 draws, no clipping, no noise
        ref = copy.deepcopy(init)
        ref.zero_grad()
        g = torch.Generator().manual_seed(999 + seed)
        (multiplicity_loss(loss_fn(ref, g), (ds.x, ds.c), k=8).mean()).backward()
        ref_grad = torch.cat([p.grad.flatten() for p in ref.parameters()])
        for k in ks:
            net = copy.deepcopy(init)
            pt = make_private(module=net, optimizer=torch.optim.Adam(net.parameters(), lr=2e-3), dataset=ds,
                              patient_ids=pids, dp=DPConfig(epsilon=8.0, delta=1e-3, accountant="rdp",
                                                            noise_multiplicity=k),
                              batch_size=6, steps=train_steps, seed=seed)
            gen = torch.Generator().manual_seed(seed)
            results[k]["initial"].append(eval_loss(pt.unwrapped))
            t0 = time.perf_counter()
            for i, (x, c) in enumerate(pt.batches()):
                pt.optimizer.zero_grad()
                if len(x) == 0:
                    pt.noise_only_step()
                    continue
                dp_mean(multiplicity_loss(loss_fn(pt.module, gen), (x, c), k=k)).backward()
                if i == 0:  # clip + noise + scale + account, then look at the privatised gradient
                    pt.optimizer.pre_step()
                    step_grad = torch.cat([p.grad.flatten() for p in pt.optimizer.params])
                    results[k]["cos"].append(float(torch.nn.functional.cosine_similarity(step_grad, ref_grad, dim=0)))
                    pt.optimizer.original_optimizer.step()
                else:
                    pt.optimizer.step()
            results[k]["sec"].append(time.perf_counter() - t0)
            results[k]["final"].append(eval_loss(pt.unwrapped))
            print(
                f"seed {seed} k={k}: sigma={pt.noise_multiplier:.3f} eps={pt.epsilon_spent():.2f} "
                f"cos={results[k]['cos'][-1]:.4f} loss {results[k]['initial'][-1]:.4f} -> "
                f"{results[k]['final'][-1]:.4f} "
                f"({results[k]['sec'][-1]:.0f} s)",
                flush=True,
            )
    return results


def multiplicity_alignment(*, batches, size=16, ks=(1, 4), seed=0):
    """Gradient quality per DP step at initialisation, k = 1 vs k = 4 (no training, cheap).

    For ``batches`` Poisson patient batches: cosine between the reference gradient (all slices, 16
    draws each, no clipping, no noise) and (a) the sum of clipped per-example gradients (what
    multiplicity changes), (b) the privatised step gradient (clipped sum + N(0, σ²C²), ε = 8).
    Also the mean per-example gradient norm before clipping.
    """
    from monai.networks.nets import DiffusionModelUNet

    ds, pids = _disc_slices(24, 4, size, seed=0)
    torch.manual_seed(seed)
    init = DiffusionModelUNet(spatial_dims=2, in_channels=5, out_channels=1, channels=(8, 16),
                              attention_levels=(False, False), num_res_blocks=1, norm_num_groups=8)
    ref = copy.deepcopy(init)
    g = torch.Generator().manual_seed(999)
    multiplicity_loss(loss_fn(ref, g), (ds.x, ds.c), k=16).mean().backward()
    ref_grad = torch.cat([p.grad.flatten() for p in ref.parameters()])
    out = {}
    for k in ks:
        net = copy.deepcopy(init)
        pt = make_private(module=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), dataset=ds, patient_ids=pids,
                          dp=DPConfig(epsilon=8.0, delta=1e-3, accountant="rdp", noise_multiplicity=k),
                          batch_size=6, steps=200, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        cos_clip, cos_priv, norms = [], [], []
        for step in range(batches):
            idx = pt.batch_indices(step)
            if len(idx) == 0:
                continue
            x, c = ds.x[idx], ds.c[idx]
            pt.optimizer.zero_grad(set_to_none=True)
            dp_mean(multiplicity_loss(loss_fn(pt.module, gen), (x, c), k=k)).backward()
            gs = [p.grad_sample for p in pt.optimizer.params]
            norms.append(float(torch.stack([gg.flatten(1).norm(dim=1) for gg in gs], 1).norm(dim=1).mean()))
            pt.optimizer.pre_step()
            clipped = torch.cat([p.summed_grad.flatten() for p in pt.optimizer.params])
            private = torch.cat([p.grad.flatten() for p in pt.optimizer.params])
            cos_clip.append(float(torch.nn.functional.cosine_similarity(clipped, ref_grad, dim=0)))
            cos_priv.append(float(torch.nn.functional.cosine_similarity(private, ref_grad, dim=0)))
        out[k] = {"cos_clipped": statistics.mean(cos_clip), "cos_clipped_sd": statistics.stdev(cos_clip),
                  "cos_private": statistics.mean(cos_priv), "cos_private_sd": statistics.stdev(cos_priv),
                  "grad_norm": statistics.mean(norms), "n": len(cos_clip), "sigma": pt.noise_multiplier}
        print(f"k={k}: {out[k]}", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--multiplicity", action="store_true")
    ap.add_argument("--alignment", type=int, default=0, metavar="BATCHES",
                    help="gradient-alignment measurement of noise multiplicity over BATCHES batches")
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--mult-size", type=int, default=32, help="image size of the --multiplicity experiment")
    args = ap.parse_args(argv)
    if args.alignment:
        multiplicity_alignment(batches=args.alignment, size=args.mult_size)
        return
    if args.multiplicity:
        res = multiplicity_experiment(train_steps=args.train_steps, seeds=args.seeds, size=args.mult_size)
        for k, r in res.items():
            print(f"k={k}: cos(step grad, reference grad) mean {statistics.mean(r['cos']):.4f}; "
                  f"final loss mean {statistics.mean(r['final']):.4f} (per seed {[round(v, 4) for v in r['final']]}); "
                  f"initial {statistics.mean(r['initial']):.4f}; train time {statistics.mean(r['sec']):.0f} s")
        return
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
    load = os.getloadavg()[0]
    rows = [
        f"| {n} | {med[n]:.3f} | {min(times[n]):.3f} | {args.batch / med[n]:.1f} | {med[n] / med['non-private']:.2f}× |"
        for n in variants
    ]
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
        f"`cmraudit.dp.make_private`; k = noise multiplicity (k forward passes per step). "
        f"Peak RSS of the whole benchmark: {rss_mb:.0f} MB; 1-min load average at the end {load:.1f} (other jobs "
        f"on the 2 cores inflate absolute times; the ratios are robust because the variants are interleaved). "
        f"Target (DESIGN § 11): DP step ≤ 4× the non-private step.\n\n"
        f"{table}\n"
    )
    print(text)
    if args.write:
        path = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        old = path.read_text() if path.exists() else "# Benchmarks\n"
        # replace the step-time part of the section; keep "### Noise multiplicity" and later sections
        pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |^### Noise multiplicity|\Z)", re.S | re.M)
        new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
        path.write_text(new)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
