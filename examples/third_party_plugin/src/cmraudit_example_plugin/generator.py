"""LabelMeanGenerator: the smallest generator that satisfies the cmraudit contract (docs/plugins.md).

Everything comes from ``cmraudit.generators`` (the plugin kit): subclass :class:`BaseGenerator`, declare the
hyper-parameters as keyword arguments of ``__init__`` (``device`` is part of the contract), implement ``fit`` /
``sample`` / ``save`` / ``load`` with the contract's keywords. The name is the entry point's (pyproject.toml);
``get_params``, presets and validation derive from the signature; ``synthetic_dataset`` builds what ``sample``
returns and ``save_checkpoint`` / ``load_checkpoint`` write and read the model folder.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from cmraudit.generators import (
    BaseGenerator,
    Dataset,
    GeneratorTags,
    UsageError,
    check_is_fitted,
    load_checkpoint,
    save_checkpoint,
    synthetic_dataset,
)


class LabelMeanGenerator(BaseGenerator):
    """Renders a mask with per-label mean intensity + smoothed noise; samples masks by replaying training masks.

    ``smoothing``: Gaussian sigma in pixels of the noise field; ``noise_scale``: multiplies
    the per-label standard deviation (1.0 = the training spread); ``device``: unused (NumPy on the CPU).
    """

    tags = GeneratorTags(conditional=True, two_stage=True, supports_dp=False, has_loss=False, deterministic_fit=True)
    presets = {"micro": {"smoothing": 0.5}}  # optional; without it every preset uses the defaults

    def __init__(self, *, smoothing: float = 1.0, noise_scale: float = 1.0, device: str = "cpu") -> None:
        self.smoothing = smoothing
        self.noise_scale = noise_scale
        self.device = device

    @classmethod
    def conformance_bad_params(cls) -> list[dict]:
        return [{"smoothing": -1.0}, {"noise_scale": "loud"}]

    def param_problems(self) -> list[str]:
        problems = []
        if not isinstance(self.smoothing, (int, float)) or self.smoothing < 0:
            problems.append(f"smoothing must be a number >= 0 (pixels), got {self.smoothing!r}")
        if not isinstance(self.noise_scale, (int, float)) or self.noise_scale < 0:
            problems.append(f"noise_scale must be a number >= 0, got {self.noise_scale!r}")
        return problems

    # -- fit / sample (the contract's keywords; work_dir / resume unused: fitting takes milliseconds)
    def fit(self, train: Dataset, *, seed: int, dp=None, progress: bool = True, work_dir=None, resume: bool = False,
            reference: Dataset | None = None) -> "LabelMeanGenerator":
        self.validate_params()
        if dp is not None:
            raise UsageError("LabelMeanGenerator does not support DP-SGD; run without --dp-epsilon")
        im, mk = np.asarray(train.images, np.float64), np.asarray(train.masks)
        self.means_ = np.array([im[mk == k].mean() if (mk == k).any() else 0.0 for k in range(4)])
        self.stds_ = np.array([im[mk == k].std() if (mk == k).any() else 0.0 for k in range(4)])
        self.mask_bank_ = mk.astype(np.uint8).copy()
        return self

    def sample(self, *, masks: np.ndarray | None = None, n: int | None = None, seed: int,
               progress: bool = True) -> Dataset:
        check_is_fitted(self, ("means_", "mask_bank_"))
        if (masks is None) == (n is None):
            raise UsageError("sample: give exactly one of masks=... or n=...")
        rng = np.random.default_rng(seed)
        if masks is None:
            idx = rng.integers(0, len(self.mask_bank_), size=int(n))
            masks = self.mask_bank_[idx].copy()
            flip = rng.random(int(n)) < 0.5
            masks[flip] = masks[flip][:, :, ::-1]
        masks = np.asarray(masks, dtype=np.uint8)
        noise = rng.normal(size=masks.shape)
        if self.smoothing > 0:
            noise = ndimage.gaussian_filter(noise, sigma=(0, self.smoothing, self.smoothing))
            noise /= noise.std() + 1e-12
        images = self.means_[masks] + self.noise_scale * self.stds_[masks] * noise
        return synthetic_dataset(images, masks, generator=self.name)

    # -- save / load: config.json + safetensors, never pickles
    def save(self, path) -> None:
        check_is_fitted(self, ("means_", "mask_bank_"))
        save_checkpoint(path, self, {"means": self.means_, "stds": self.stds_, "mask_bank": self.mask_bank_})

    @classmethod
    def load(cls, path) -> "LabelMeanGenerator":
        gen, w, _ = load_checkpoint(path, cls)
        gen.means_, gen.stds_ = w["means"].numpy(), w["stds"].numpy()
        gen.mask_bank_ = w["mask_bank"].numpy()
        return gen
