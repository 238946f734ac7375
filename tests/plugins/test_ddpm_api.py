"""DDPM specifics: vendor conditioning, sampler choice, data checks, presets, loss()."""
import numpy as np
import pytest

from cmraudit.errors import DataError, NotFittedError, UsageError
from cmraudit.generators.presets import resolve_preset
from cmraudit.testing import make_toy_dataset
from cmraudit_ddpm import DDPMGenerator


@pytest.fixture(scope="module")
def vendor_gen():
    ds = make_toy_dataset(n_patients=4, slices=2, size=32, vendors="AB")
    return DDPMGenerator(
        **{**DDPMGenerator.conformance_params(), "vendor_conditioning": True, "guidance_scale": 2.0}
    ).fit(ds, seed=0, progress=False), ds


def test_vendor_sampling(vendor_gen):
    gen, ds = vendor_gen
    assert gen.vendors_ == ["A", "B"]
    m = np.asarray(ds.masks[:2])
    a, b = gen.sample(masks=m, seed=0, vendor="A"), gen.sample(masks=m, seed=0, vendor="B")
    assert list(a.vendor) == ["A", "A"] and np.array_equal(a.masks, m)
    assert not np.array_equal(a.images, b.images)  # the class embedding changes the rendering
    with pytest.raises(UsageError, match="unknown vendor 'Z'"):
        gen.sample(masks=m, seed=0, vendor="Z")
    assert gen.sample(n=2, seed=0).images.shape == (2, 32, 32)  # unconditional on vendor


def test_vendor_needs_vendor_model():
    gen = DDPMGenerator(**DDPMGenerator.conformance_params()).fit(
        make_toy_dataset(n_patients=2, slices=1), seed=0, progress=False
    )
    with pytest.raises(UsageError, match="vendor_conditioning=True"):
        gen.sample(n=1, seed=0, vendor="A")
    with pytest.raises(UsageError, match="training size"):
        gen.sample(masks=np.zeros((1, 16, 16), np.uint8), seed=0)
    with pytest.raises(UsageError, match="0..3"):
        gen.sample(masks=np.full((1, 32, 32), 7, np.uint8), seed=0)
    ddpm = gen.set_params(sampler="ddpm", num_train_timesteps=20)
    ddpm.mask_model_.noise = ddpm._noise()  # fitted with 1000 steps; only checks the 20-step DDPM loop runs
    assert ddpm.sample(masks=np.asarray(make_toy_dataset(n_patients=1, slices=1).masks), seed=0).images.shape == (
        1,
        32,
        32,
    )


def test_loss_is_per_sample(vendor_gen):
    gen, ds = vendor_gen
    loss = gen.loss(np.asarray(ds.images[:3]), np.asarray(ds.masks[:3]), t=np.array([10, 500, 900]))
    assert loss.shape == (3,) and np.isfinite(loss).all() and (loss > 0).all()
    with pytest.raises(UsageError, match="t must be"):
        gen.loss(np.asarray(ds.images[:1]), np.asarray(ds.masks[:1]), t=1000)
    # the FCRE hook: (predicted ε, true ε) maps with the same fixed noise as loss()
    im, mk = np.asarray(ds.images[:3]), np.asarray(ds.masks[:3])
    pred, eps = gen.prediction_pair(im, mk, t=400, seed=5)
    assert pred.shape == eps.shape == (3, 32, 32)
    np.testing.assert_allclose(((pred - eps) ** 2).mean((1, 2)), gen.loss(im, mk, t=400, seed=5), rtol=1e-5)


def test_data_and_param_checks():
    with pytest.raises(NotFittedError):
        DDPMGenerator().sample(n=1, seed=0)
    with pytest.raises(DataError, match="image_size=64"):
        DDPMGenerator.from_preset("quick").fit(
            make_toy_dataset(n_patients=2, slices=1, size=32), seed=0, progress=False
        )
    with pytest.raises(UsageError) as e:
        DDPMGenerator(channels=(32, 48), attention_levels=(False,), sampler="x").validate_params()
    msg = str(e.value)
    assert "attention_levels" in msg and "norm_num_groups" in msg and "sampler" in msg  # all problems at once
    with pytest.raises(UsageError, match="unknown parameter"):
        DDPMGenerator(chanels=(8, 16))


def test_presets():
    quick, paper = resolve_preset("quick", DDPMGenerator.presets), resolve_preset("paper", DDPMGenerator.presets)
    assert (
        quick["channels"] == (32, 64, 64)
        and quick["attention_levels"] == (False, False, True)
        and quick["image_size"] == 64
    )
    assert quick["sampler"] == "ddim" and quick["sampling_steps"] == 20 and quick["schedule"] == "scaled_linear_beta"
    assert quick["steps"] == 360 and quick["mask_steps"] == 1000 and quick["mask_position_bins"] == 4
    assert quick["mask_size"] == 32 and quick["mask_sampling_steps"] == 20 and paper["mask_size"] is None
    assert (
        paper["num_train_timesteps"] == 1000
        and paper["batch_size"] == 8
        and paper["epochs"] == 400
        and paper["lr"] == 1e-4
    )
    assert (
        paper["mask_channels"][0] == 64
        and paper["mask_channels"][-1] == 512
        and paper["mask_attention_levels"][-2:] == (True, True)
    )
    DDPMGenerator.from_preset("paper").validate_params()
    with pytest.raises(UsageError, match="unknown preset"):
        DDPMGenerator.from_preset("huge")


def test_shared_whitebox_pass_equals_separate_calls(vendor_gen):
    """loss + FCRE in one pass per timestep (loss_is_pair_mse): each column is exactly generator.loss with the
    documented seed, and the FCRE features those of prediction_pair at the same noise."""
    from cmraudit.privacy.mia.whitebox import _fcre_batch, whitebox_matrices

    gen, ds = vendor_gen
    im, mk = np.asarray(ds.images, np.float32), np.asarray(ds.masks)
    L, F = whitebox_matrices(gen, ds, loss_timesteps=(100, 300), fcre_timesteps=(300, 500), seed=7)
    np.testing.assert_allclose(L[:, 0], gen.loss(im, mk, t=100, seed=7 + 100_000), rtol=1e-6)
    np.testing.assert_allclose(L[:, 1], gen.loss(im, mk, t=300, seed=7 + 300_000), rtol=1e-5)
    expect = sum(_fcre_batch(*(np.asarray(a, np.float64) for a in gen.prediction_pair(im, mk, t=t, seed=7 + 1000 * t)))
                 for t in (300, 500)) / 2
    np.testing.assert_allclose(F, expect, rtol=1e-6)
