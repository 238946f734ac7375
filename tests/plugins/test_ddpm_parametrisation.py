"""DDPM image model: ε / x0 / v targets and Min-SNR-γ weighting (the quick preset's objective, issue 18)."""
import numpy as np
import pytest
import torch

from cmraudit.errors import UsageError
from cmraudit.generators.diffusion import NoiseSpec, alphas_cumprod, eps_loss, min_snr_weight
from cmraudit.testing import make_toy_dataset
from cmraudit_ddpm import DDPMGenerator


def test_min_snr_weights_golden():
    """SNR = ᾱ/(1−ᾱ): ᾱ = 0.8 → SNR 4, ᾱ = 0.5 → 1, ᾱ = 0.95 → 19; γ = 5."""
    acp = torch.tensor([0.8, 0.5, 0.95], dtype=torch.float64)
    np.testing.assert_allclose(min_snr_weight(acp, 5.0, "epsilon").numpy(), [1.0, 1.0, 5 / 19], rtol=1e-12)
    np.testing.assert_allclose(min_snr_weight(acp, 5.0, "v_prediction").numpy(), [4 / 5, 1 / 2, 5 / 20], rtol=1e-12)
    np.testing.assert_allclose(min_snr_weight(acp, 5.0, "sample").numpy(), [4.0, 1.0, 5.0], rtol=1e-12)


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction", "sample"])
def test_weighted_loss_is_weight_times_plain_loss(ptype):
    """Per-sample loss with γ = the unweighted per-sample loss × the weight at each sample's t (same draws)."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)

    def model(x, timesteps):
        return net(x)

    acp = alphas_cumprod(NoiseSpec())
    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    t = torch.tensor([0, 50, 200, 400, 700, 999])
    plain = eps_loss(model, x0, acp=acp, generator=torch.Generator().manual_seed(3), t=t, reduction="none",
                     prediction_type=ptype)
    weighted = eps_loss(model, x0, acp=acp, generator=torch.Generator().manual_seed(3), t=t, reduction="none",
                        prediction_type=ptype, snr_gamma=5.0)
    w = min_snr_weight(acp[t].float(), 5.0, ptype)
    torch.testing.assert_close(weighted, plain * w)
    mean = eps_loss(model, x0, acp=acp, generator=torch.Generator().manual_seed(3), t=t, prediction_type=ptype,
                    snr_gamma=5.0)
    torch.testing.assert_close(mean, (plain * w).mean())


@pytest.mark.parametrize("ptype", ["v_prediction", "sample"])
def test_noise_hook_converts_to_epsilon(ptype):
    """predict_noise of a v / x0 model is the ε implied by its output: ε = a v + s x_t, ε = (x_t − a x̂0)/s."""
    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    gen = DDPMGenerator(**{**DDPMGenerator.conformance_params(), "prediction_type": ptype, "snr_gamma": 5.0})
    gen.fit(ds, seed=0, progress=False)
    x_t = np.random.default_rng(0).normal(size=(4, 32, 32)).astype(np.float32)
    masks = np.asarray(ds.masks[:4])
    t = 300
    eps_hat = gen.predict_noise(x_t, masks, t=t)
    a, s = gen.noise_schedule(t)
    from cmraudit.generators.diffusion import onehot

    net = gen.image_modules_["image"].eval()
    with torch.no_grad():
        out = net(torch.cat([torch.from_numpy(x_t)[:, None], onehot(masks)], 1),
                  timesteps=torch.full((4,), t))[:, 0].double().numpy()
    expect = a * out + s * x_t if ptype == "v_prediction" else (x_t - a * out) / s
    np.testing.assert_allclose(eps_hat, expect, rtol=1e-4, atol=1e-5)
    syn = gen.sample(n=3, seed=1)
    assert np.isfinite(np.asarray(syn.images)).all() and np.abs(np.asarray(syn.images)).max() <= 1.0


def test_defaults_and_bad_values_are_named():
    """Plain ε by default and in micro/paper (the reference study's DDPM); the quick preset uses v + Min-SNR-5."""
    assert DDPMGenerator().prediction_type == "epsilon" and DDPMGenerator().snr_gamma is None
    for preset in ("micro", "paper"):
        g = DDPMGenerator.from_preset(preset)
        assert g.prediction_type == "epsilon" and g.snr_gamma is None
    q = DDPMGenerator.from_preset("quick")
    assert q.prediction_type == "v_prediction" and q.snr_gamma == 5.0
    with pytest.raises(UsageError, match="prediction_type"):
        DDPMGenerator(prediction_type="score").validate_params()
    with pytest.raises(UsageError, match="snr_gamma"):
        DDPMGenerator(snr_gamma=-1).validate_params()


def test_sampling_params_set_after_fit_reach_the_mask_model():
    """set_params(sampler=..., mask_sampling_steps=...) on a fitted generator changes how its masks are drawn."""
    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    gen = DDPMGenerator(**DDPMGenerator.conformance_params()).fit(ds, seed=0, progress=False)
    a = gen.sample(n=2, seed=5).masks
    gen.set_params(mask_sampling_steps=2)
    b = gen.sample(n=2, seed=5).masks
    assert gen.mask_model_.sampling_steps == 2 and gen.mask_model_.sampler == "ddim"
    gen.set_params(mask_sampling_steps=None)
    np.testing.assert_array_equal(gen.sample(n=2, seed=5).masks, a)  # back to sampling_steps: the same draws
    assert b.shape == a.shape


def test_whitebox_hooks_score_in_the_fit_precision(monkeypatch):
    """loss / prediction_pair evaluate the network in the precision it was trained in (bf16 autocast for a bf16 fit
    where the CPU runs bf16; float32 for a float32 fit and under CMRAUDIT_CPU_PRECISION=fp32); the audit records it."""
    from cmraudit.device import ENV_CPU_PRECISION
    from cmraudit.privacy.mia.whitebox import hook_precision

    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    im, mk = np.asarray(ds.images, np.float32), np.asarray(ds.masks)
    monkeypatch.setenv(ENV_CPU_PRECISION, "bf16")
    gen = DDPMGenerator(**DDPMGenerator.conformance_params()).fit(ds, seed=0, progress=False)
    assert gen.training_["precision"] == "bf16-autocast" and hook_precision(gen) == "bf16-autocast"
    bf = gen.loss(im, mk, t=300, seed=1)
    pred_bf, _ = gen.prediction_pair(im, mk, t=300, seed=1)
    monkeypatch.setenv(ENV_CPU_PRECISION, "fp32")
    assert hook_precision(gen) == "fp32"
    fp = gen.loss(im, mk, t=300, seed=1)
    pred_fp, _ = gen.prediction_pair(im, mk, t=300, seed=1)
    assert not np.array_equal(bf, fp) and not np.array_equal(pred_bf, pred_fp)
    np.testing.assert_allclose(bf, fp, rtol=0.05)
    monkeypatch.setenv(ENV_CPU_PRECISION, "bf16")
    gen.training_["precision"] = "fp32"  # a float32 (or DP-SGD) fit is scored in float32 on any CPU
    assert hook_precision(gen) == "fp32"
    np.testing.assert_array_equal(gen.loss(im, mk, t=300, seed=1), fp)
    assert hook_precision(object()) == "fp32"  # a third-party generator without the property
