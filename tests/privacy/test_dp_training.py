"""DP-SGD end to end on a micro MONAI DiffusionModelUNet; clipping/noise scale; noise multiplicity; resume."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from cmraudit.errors import UsageError
from cmraudit.dp import (
    DPConfig,
    compose_budget,
    dp_mean,
    fix_module,
    make_private,
    multiplicity_loss,
)

# Opacus hooks a module whose input does not require grad; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

monai_nets = pytest.importorskip("monai.networks.nets")


def micro_unet():
    return monai_nets.DiffusionModelUNet(
        spatial_dims=2, in_channels=5, out_channels=1, channels=(8, 16), attention_levels=(False, False),
        num_res_blocks=1, norm_num_groups=8,
    )


class DiscSlices(torch.utils.data.Dataset):
    """Hand-made cine-like slices: LV disc, MYO ring, RV crescent; 4 slices per patient, per-patient radius."""

    def __init__(self, n_patients=12, slices=4, size=32, seed=0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size] - size / 2
        r = np.hypot(yy, xx)
        images, masks, pids = [], [], []
        for p in range(n_patients):
            rad = rng.uniform(4, 7)
            for s in range(slices):
                lv = r < rad * (1 - 0.05 * s)
                myo = (r >= rad * (1 - 0.05 * s)) & (r < rad * (1 - 0.05 * s) + 2.5)
                rv = (np.hypot(yy, xx + rad + 5) < rad) & ~lv & ~myo
                m = np.zeros((size, size), np.int64)
                m[rv], m[myo], m[lv] = 1, 2, 3
                img = np.where(lv, 0.8, np.where(myo, -0.3, np.where(rv, 0.6, -0.8)))
                images.append(img + 0.05 * rng.standard_normal((size, size)))
                masks.append(m)
                pids.append(f"P{p:02d}")
        self.images = torch.tensor(np.array(images), dtype=torch.float32)[:, None]
        self.onehot = torch.nn.functional.one_hot(torch.tensor(np.array(masks)), 4).permute(0, 3, 1, 2).float()
        self.patient_ids = pids

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.onehot[i]


def diffusion_loss(model, generator):
    """Per-example ε-prediction MSE with a fresh timestep and noise on each call."""

    def loss(batch):
        x, cond = batch
        t = torch.randint(0, 1000, (len(x),), generator=generator)
        noise = torch.randn(x.shape, generator=generator)
        abar = torch.cos(t.float() / 1000 * torch.pi / 2).clamp(min=1e-3).pow(2).view(-1, 1, 1, 1)
        noisy = abar.sqrt() * x + (1 - abar).sqrt() * noise
        out = model(torch.cat([noisy, cond], 1), timesteps=t)
        return (out - noise).pow(2).flatten(1).mean(1)

    return loss


def test_monai_unet_passes_opacus_validation_unchanged():
    from opacus.validators import ModuleValidator

    net = micro_unet()
    assert ModuleValidator.validate(net, strict=False) == []  # its mid-block attention included
    fixed, changes = fix_module(net)
    assert fixed is net and changes == []


def test_micro_diffusion_training_under_patient_level_dp():
    ds = DiscSlices()
    net = micro_unet()
    dp = DPConfig(epsilon=8.0, delta=1e-3, max_grad_norm=1.0, noise_multiplicity=2)  # default PRV accountant
    pt = make_private(module=net, optimizer=torch.optim.Adam(net.parameters(), lr=1e-3), dataset=ds,
                      patient_ids=ds.patient_ids, dp=dp, batch_size=3, steps=3, seed=0)
    assert pt.sample_rate == pytest.approx(3 / 12) and pt.n_patients == 12
    assert pt.noise_multiplier > 0 and pt.module_changes == []
    before = copy.deepcopy(pt.unwrapped.state_dict())
    gen = torch.Generator().manual_seed(0)
    losses = []
    for x, cond in pt.batches():
        pt.optimizer.zero_grad()
        if len(x) == 0:
            pt.noise_only_step()
            continue
        loss = dp_mean(multiplicity_loss(diffusion_loss(pt.module, gen), (x, cond), k=dp.noise_multiplicity))
        loss.backward()
        pt.optimizer.step()
        losses.append(float(loss.detach()))
    assert losses and all(np.isfinite(losses))
    assert pt.steps_taken == pt.steps == 3
    pt.check_budget()
    spent = pt.epsilon_spent()
    assert 0 < spent <= dp.epsilon
    changed = any(not torch.equal(before[k], v) for k, v in pt.unwrapped.state_dict().items())
    assert changed
    block = compose_budget([pt.budget("image_model")])
    stage = block["stages"]["image_model"]
    assert stage["epsilon"] == pytest.approx(spent) and stage["noise_multiplicity"] == 2
    assert stage["sample_rate"] == pytest.approx(pt.sample_rate) and stage["steps"] == 3
    assert block["accountant"] == "prv" and block["unit"] == "patient"
    json.dumps(block, allow_nan=False)
    # One step too many is detected.
    pt.noise_only_step()
    with pytest.raises(UsageError, match="calibrated for 3"):
        pt.check_budget()


def test_clipping_and_noise_scale_are_per_patient():
    """p.grad = (Σ_i clip_C(g_i) + N(0, σ²C²)) / (q · n_patients); checked against a manual computation."""
    torch.manual_seed(0)
    n_slices, pids = 60, [f"P{i // 3}" for i in range(60)]  # 20 patients, 3 slices each
    ds = torch.utils.data.TensorDataset(torch.randn(n_slices, 100), torch.randn(n_slices, 100))
    net = torch.nn.Linear(100, 100)
    ref = copy.deepcopy(net)
    C = 0.5
    pt = make_private(module=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), dataset=ds, patient_ids=pids,
                      dp=DPConfig(epsilon=3.0, delta=1e-3, max_grad_norm=C, accountant="rdp"),
                      batch_size=5, steps=3, seed=1)
    x, y = next(iter(pt.data_loader))
    while len(x) == 0:  # pragma: no cover - probability (3/4)^20
        x, y = next(iter(pt.data_loader))
    pt.optimizer.zero_grad()
    dp_mean((pt.module(x) - y).pow(2).mean(1)).backward()
    pt.optimizer.step()
    clipped = {n: torch.zeros_like(p) for n, p in ref.named_parameters()}
    for i in range(len(x)):
        ref.zero_grad()
        (ref(x[i:i + 1]) - y[i:i + 1]).pow(2).mean().backward()
        norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in ref.parameters()))
        for n, p in ref.named_parameters():
            clipped[n] += p.grad * min(1.0, C / (float(norm) + 1e-6))
    noise = torch.cat([(p.grad * 5.0 - clipped[n]).flatten()
                       for (n, _), p in zip(ref.named_parameters(), pt.unwrapped.parameters())])
    assert float(noise.std()) == pytest.approx(pt.noise_multiplier * C, rel=0.05)
    assert abs(float(noise.mean())) < 0.05 * pt.noise_multiplier * C


def test_noise_multiplicity_gives_per_example_gradient_of_averaged_loss():
    """Opacus's per-sample gradients after k forward passes == manual per-example gradients of the k-average."""
    torch.manual_seed(0)
    ds = DiscSlices(n_patients=6, slices=2, size=16)
    net = micro_unet()
    ref = copy.deepcopy(net)
    pt = make_private(module=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), dataset=ds,
                      patient_ids=ds.patient_ids, dp=DPConfig(epsilon=4.0, delta=1e-3, accountant="rdp"),
                      batch_size=3, steps=2, seed=0)
    x, cond = ds.images[:2], ds.onehot[:2]
    k = 2
    pt.optimizer.zero_grad()
    dp_mean(multiplicity_loss(diffusion_loss(pt.module, torch.Generator().manual_seed(5)), (x, cond), k=k)).backward()
    per_sample = [p.grad_sample.detach().clone() for p in pt.module.parameters()]
    # Replay the same timesteps/noise draws per example through an unwrapped copy.
    gen = torch.Generator().manual_seed(5)
    draws = []
    for _ in range(k):
        t = torch.randint(0, 1000, (2,), generator=gen)
        draws.append((t, torch.randn(x.shape, generator=gen)))
    worst = 0.0
    for i in range(2):
        ref.zero_grad()
        total = 0.0
        for t, noise in draws:
            abar = torch.cos(t[i:i + 1].float() / 1000 * torch.pi / 2).clamp(min=1e-3).pow(2).view(-1, 1, 1, 1)
            noisy = abar.sqrt() * x[i:i + 1] + (1 - abar).sqrt() * noise[i:i + 1]
            out = ref(torch.cat([noisy, cond[i:i + 1]], 1), timesteps=t[i:i + 1])
            total = total + (out - noise[i:i + 1]).pow(2).mean()
        (total / k).backward()
        for p, g in zip(ref.parameters(), per_sample):
            worst = max(worst, float((p.grad - g[i]).abs().max()))
    assert worst < 1e-5


def test_fix_module_replaces_batchnorm_and_rebuilds_optimizer():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 1))
    fixed, changes = fix_module(net)
    assert fixed is not net
    assert changes == ["1: BatchNorm2d → GroupNorm"]
    ds = torch.utils.data.TensorDataset(torch.randn(20, 1, 8, 8))
    pt = make_private(module=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5), dataset=ds,
                      patient_ids=[i // 2 for i in range(20)], dp=DPConfig(epsilon=4.0, delta=1e-3, accountant="rdp"),
                      batch_size=3, steps=2, seed=0)
    assert pt.module_changes == changes
    assert isinstance(pt.unwrapped[1], torch.nn.GroupNorm)
    assert pt.optimizer.defaults["momentum"] == 0.5
    assert {id(p) for p in pt.optimizer.params} == {id(p) for p in pt.unwrapped.parameters()}


def test_resume_restores_accountant_and_sampler():
    ds = torch.utils.data.TensorDataset(torch.randn(30, 4))
    pids = [i // 3 for i in range(30)]

    def build():
        net = torch.nn.Linear(4, 1)
        return make_private(module=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1), dataset=ds,
                            patient_ids=pids, dp=DPConfig(epsilon=2.0, delta=1e-3, accountant="rdp"),
                            batch_size=2, steps=12, seed=3)

    def run(pt, n):
        for i, (x,) in enumerate(pt.batches()):
            if i == n:
                break
            pt.optimizer.zero_grad()
            if len(x) == 0:
                pt.noise_only_step()
                continue
            dp_mean(pt.module(x).squeeze(1)).backward()
            pt.optimizer.step()

    a = build()
    run(a, 7)
    state = a.state_dict()
    b = build()
    b.load_state_dict(state)
    assert b.steps_taken == a.steps_taken == 7
    assert b.epsilon_spent() == pytest.approx(a.epsilon_spent())
    assert list(iter(b.sampler)) == list(iter(a.sampler))  # sampler continues at the same epoch
    nxt_a, nxt_b = next(a.batches()), next(b.batches())  # both continue at step 7
    assert torch.equal(nxt_a[0], nxt_b[0])
    np.testing.assert_array_equal(b.batch_indices(7), a.batch_indices(7))
    c = build()
    c.resume_at(7)
    assert c.epsilon_spent() == pytest.approx(a.epsilon_spent())
    with pytest.raises(UsageError, match="calibrated for 12"):
        c.resume_at(13)
    state["noise_multiplier"] *= 2
    with pytest.raises(UsageError, match="cannot resume"):
        b.load_state_dict(state)


def test_make_private_rejects_bad_setups():
    ds = torch.utils.data.TensorDataset(torch.randn(10, 4))
    net = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    kw = dict(module=net, optimizer=opt, dataset=ds, seed=0, steps=3)
    with pytest.raises(UsageError, match="finite --dp-epsilon"):
        make_private(patient_ids=list(range(10)), dp=DPConfig(epsilon=float("inf")), batch_size=2, **kw)
    with pytest.raises(UsageError, match="one id per slice"):
        make_private(patient_ids=[0] * 9, dp=DPConfig(epsilon=1.0), batch_size=2, **kw)
    with pytest.raises(UsageError, match="--dp-delta"):
        make_private(patient_ids=list(range(10)), dp=DPConfig(epsilon=1.0, delta=0.2), batch_size=2, **kw)
    with pytest.raises(UsageError, match="batch_size"):
        make_private(patient_ids=list(range(10)), dp=DPConfig(epsilon=1.0, delta=1e-3), batch_size=20, **kw)


def test_loop_style_usage_with_indices_and_step():
    """How the shared training loop drives it: own arrays, dataset=None, batch_indices(step), pt.step(...)."""
    torch.manual_seed(0)
    data = torch.randn(40, 8)
    pids = [f"P{i % 10}" for i in range(40)]  # 10 patients, interleaved slices
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.SiLU(), torch.nn.Linear(16, 8))
    pt = make_private(
        module=net,
        optimizer=torch.optim.AdamW(net.parameters(), lr=1e-2),
        dataset=None,
        patient_ids=pids,
        dp=DPConfig(epsilon=4.0, delta=1e-3, accountant="rdp", noise_multiplicity=3),
        batch_size=3,
        steps=8,
        seed=2,
    )
    calls = []

    def step_loss(model, idx, gen):  # the loop's signature: batch-mean loss over idx, randomness from gen
        calls.append(len(idx))
        x = data[torch.as_tensor(idx)]
        noise = torch.randn(x.shape, generator=gen)
        return (model(x + noise) - x).pow(2).mean()

    losses = []
    for step in range(pt.steps):
        idx = pt.batch_indices(step)
        assert len(set(np.asarray(pids)[idx])) == len(idx)
        gen = torch.Generator().manual_seed(step)
        loss = pt.step(lambda: step_loss(pt.module, idx, gen), empty=len(idx) == 0)
        if loss is not None:
            losses.append(loss)
    assert pt.steps_taken == 8 and 0 < pt.epsilon_spent() <= 4.0
    assert len(calls) == 3 * len(losses)  # K = 3 forward passes per non-empty step
    assert all(np.isfinite(losses))


def test_ema_codebook_is_refused_under_dp():
    """MONAI's VQVAE updates its codebook from batch encodings (EMA): no clipping, no noise -> refused."""
    vq = monai_nets.VQVAE(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 16), num_res_channels=(8, 16),
                          num_res_layers=1, downsample_parameters=((2, 4, 1, 1), (2, 4, 1, 1)),
                          upsample_parameters=((2, 4, 1, 1, 0), (2, 4, 1, 1, 0)), num_embeddings=16, embedding_dim=4)
    with pytest.raises(UsageError, match="EMAQuantizer"):
        fix_module(vq)
    kl = monai_nets.AutoencoderKL(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 16), latent_channels=4,
                                  num_res_blocks=1, norm_num_groups=8, attention_levels=(False, False))
    assert fix_module(kl) == (kl, [])
