"""Core pieces: augmentation keeps image/mask aligned, one-hot encoding, mask model, presets, registry-free loading."""
import numpy as np
import pytest
import torch

from cmraudit.errors import CheckpointError, UsageError
from cmraudit.generators.augment import flip_rotate
from cmraudit.generators.checkpoint import load_generator, write_json_atomic
from cmraudit.generators.diffusion import NoiseSpec, UNetSpec, onehot
from cmraudit.generators.mask_model import MaskDiffusion
from cmraudit.generators.presets import resolve_preset
from cmraudit.generators.training import TrainConfig
from cmraudit.testing import make_toy_dataset


def test_onehot_roundtrip():
    m = np.random.default_rng(0).integers(0, 4, (3, 8, 8)).astype(np.uint8)
    oh = onehot(m)
    assert oh.shape == (3, 4, 8, 8) and set(torch.unique(oh).tolist()) == {-1.0, 1.0}
    assert np.array_equal(oh.argmax(1).numpy(), m)


def test_flip_rotate_keeps_alignment_and_onehot():
    ds = make_toy_dataset(n_patients=2, slices=2, size=32)
    img = torch.from_numpy(np.array(ds.images))[:, None]
    img = torch.where(onehot(ds.masks)[:, 3:4] > 0, 1.0, -1.0)  # image = LV indicator
    oh = onehot(ds.masks)
    a_img, a_oh = flip_rotate([img, oh], generator=torch.Generator().manual_seed(0), modes=["bilinear", "nearest"])
    assert torch.equal((a_oh > 0).sum(1), torch.ones(4, 32, 32, dtype=torch.long))  # still one label per pixel
    lv = a_oh[:, 3] > 0
    assert ((a_img[:, 0] > 0) == lv).float().mean() > 0.97  # the image moved with its mask
    assert not torch.equal(a_oh, oh)
    same = flip_rotate([oh], generator=torch.Generator().manual_seed(0), max_degrees=0.0, modes=["nearest"])[0]
    assert torch.equal(same.abs(), oh.abs())


def test_mask_model_samples_label_maps():
    ds = make_toy_dataset(n_patients=2, slices=2, size=16)
    mm = MaskDiffusion(
        unet=UNetSpec((8, 16), (False, False), 1, 8, 8),
        noise=NoiseSpec(),
        train=TrainConfig(steps=3, batch_size=4),
        sampler="ddim",
        sampling_steps=3,
    )
    with pytest.raises(UsageError):
        mm.sample(2, shape=(16, 16), seed=0, device=torch.device("cpu"))
    mm.fit(np.asarray(ds.masks), seed=0, device=torch.device("cpu"), progress=False)
    out = mm.sample(5, shape=(16, 16), seed=0, device=torch.device("cpu"), batch_size=2)
    assert out.shape == (5, 16, 16) and out.dtype == np.uint8 and out.max() <= 3
    assert np.array_equal(out, mm.sample(5, shape=(16, 16), seed=0, device=torch.device("cpu"), batch_size=2))


def test_spec_problems_collected():
    assert UNetSpec((8, 12), (False,), 0, 8, 8).problems() and len(UNetSpec((8, 12), (False,), 0, 8, 8).problems()) == 3
    assert NoiseSpec(schedule="weird", beta_start=0.1, beta_end=0.01).problems()
    with pytest.raises(UsageError, match="unknown preset"):
        resolve_preset("fast")


def test_load_generator_errors(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_generator(tmp_path)
    write_json_atomic(tmp_path / "config.json", {"format": "cmraudit-generator", "format_version": 1})
    with pytest.raises(CheckpointError, match="names no generator"):
        load_generator(tmp_path)


@pytest.mark.slow
def test_mask_model_learns_plausible_masks_quickly():
    """Planted truth: phantom masks are ~89 % background with one LV blob. After 150 steps an x0-predicting
    mask model reproduces that; noise-like samples (the failure of a short ε-trained model) have ~30 % background."""
    from scipy import ndimage

    from cmraudit.data.phantom import PhantomConfig, make_phantom

    ds = make_phantom(PhantomConfig(subjects=8, slices=4, size=32), seed=0)
    mm = MaskDiffusion(
        unet=UNetSpec((16, 32), (False, False), 1, 8, 16),
        noise=NoiseSpec(prediction_type="sample"),
        train=TrainConfig(steps=150, batch_size=16, lr=2e-3, warmup_steps=10),
        sampler="ddim",
        sampling_steps=20,
    )
    m = mm.fit(np.asarray(ds.masks), seed=0, device=torch.device("cpu"), progress=False).sample(
        8, shape=(32, 32), seed=0, device=torch.device("cpu")
    )
    assert abs(float((m == 0).mean()) - float((np.asarray(ds.masks) == 0).mean())) < 0.08
    assert sum(ndimage.label(x == 3)[1] == 1 for x in m) >= 6  # one LV blob in most samples


def test_mask_model_at_lower_resolution_targets_and_upsampling():
    """``size`` below the mask size: targets are area averages (2×2 blocks), samples come back at full size."""
    m = np.zeros((1, 4, 4), np.uint8)
    m[0, :2, :2] = 3  # one 2×2 block all LV
    m[0, 2:, :2] = [[2, 2], [3, 3]]  # half MYO, half LV
    mm = MaskDiffusion(
        unet=UNetSpec((8, 16), (False, False), 1, 8, 8),
        noise=NoiseSpec(),
        train=TrainConfig(steps=2, batch_size=2),
        sampler="ddim",
        sampling_steps=2,
        size=2,
    )
    t = mm.targets(m)
    assert t.shape == (1, 4, 2, 2)
    assert torch.allclose(t[0, :, 0, 0], torch.tensor([-1.0, -1.0, -1.0, 1.0]))  # pure LV block
    assert torch.allclose(t[0, :, 1, 0], torch.tensor([-1.0, -1.0, 0.0, 0.0]))  # half MYO, half LV
    assert torch.allclose(t[0, :, 0, 1], torch.tensor([1.0, -1.0, -1.0, -1.0]))  # background
    with pytest.raises(UsageError, match="multiple of mask_size"):
        MaskDiffusion(unet=mm.unet, noise=mm.noise, train=mm.train, size=3).targets(m)
    ds = make_toy_dataset(n_patients=2, slices=2, size=32)
    small = MaskDiffusion(unet=UNetSpec((8, 16), (False, False), 1, 8, 8), noise=NoiseSpec(prediction_type="sample"),
                          train=TrainConfig(steps=3, batch_size=4), sampler="ddim", sampling_steps=3, size=16)
    small.fit(np.asarray(ds.masks), seed=0, device=torch.device("cpu"), progress=False)
    out = small.sample(3, shape=(32, 32), seed=0, device=torch.device("cpu"))
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8 and out.max() <= 3


def test_two_stage_mask_size_parameters_checked():
    from cmraudit_ddpm import DDPMGenerator

    params = resolve_preset("micro", DDPMGenerator.presets)
    with pytest.raises(UsageError, match="image_size 32 must be a multiple of mask_size 24"):
        DDPMGenerator(**{**params, "mask_size": 24, "mask_channels": (8, 16)}).validate_params()
    with pytest.raises(UsageError, match="mask_sampling_steps"):
        DDPMGenerator(**{**params, "mask_sampling_steps": 0}).validate_params()
    q = resolve_preset("quick", DDPMGenerator.presets)
    assert q["mask_size"] * 2 == q["image_size"] and q["mask_sampling_steps"] <= q["sampling_steps"]
    gen = DDPMGenerator(**{**params, "mask_size": 16, "mask_sampling_steps": 2, "device": "cpu"})
    assert gen._mask_model().size == 16 and gen._mask_model().sampling_steps == 2


def test_two_stage_with_half_resolution_masks_fits_samples_and_reloads(tmp_path):
    from cmraudit_ddpm import DDPMGenerator

    ds = make_toy_dataset(n_patients=2, slices=2, size=32)
    gen = DDPMGenerator(
        **{**resolve_preset("micro", DDPMGenerator.presets), "mask_size": 16, "mask_sampling_steps": 2, "device": "cpu"}
    )
    gen.fit(ds, seed=0, progress=False)
    a = gen.sample(n=3, seed=1)
    assert np.asarray(a.masks).shape == (3, 32, 32)
    gen.save(tmp_path / "g")
    b = DDPMGenerator.load(tmp_path / "g").sample(n=3, seed=1)
    assert np.array_equal(np.asarray(a.masks), np.asarray(b.masks)) and np.allclose(
        np.asarray(a.images), np.asarray(b.images)
    )
