"""LabelMeanGenerator: the smallest generator that satisfies the cmraudit contract.

Contract (cmraudit docs/design.md § 5): ``__init__`` stores parameters only; ``fit`` returns self
and sets attributes ending in ``_``; ``sample(masks=...)`` / ``sample(n=...)`` return a
cmraudit Dataset; ``save``/``load`` use a directory with config.json + safetensors weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from cmraudit.data.dataset import Dataset
from cmraudit.errors import CheckpointError, UsageError
from cmraudit.generators.base import GeneratorTags, check_is_fitted
from cmraudit.generators.checkpoint import FORMAT, FORMAT_VERSION, atomic_dir, load_weights, read_config, save_weights, write_json_atomic


class LabelMeanGenerator:
    """Renders a mask with per-label mean intensity + smoothed noise; samples masks by replaying training masks.

    ``smoothing``: Gaussian sigma in pixels of the noise field; ``noise_scale``: multiplies
    the per-label standard deviation (1.0 = the training spread).
    """

    name = "example-labelmean"
    tags = GeneratorTags(conditional=True, two_stage=True, supports_dp=False, has_loss=False, deterministic_fit=True)

    def __init__(self, *, smoothing: float = 1.0, noise_scale: float = 1.0) -> None:
        self.smoothing = smoothing
        self.noise_scale = noise_scale

    # -- sklearn-style parameters
    def get_params(self) -> dict:
        return {"smoothing": self.smoothing, "noise_scale": self.noise_scale}

    @classmethod
    def conformance_params(cls) -> dict:
        return {"smoothing": 1.0, "noise_scale": 1.0}

    @classmethod
    def conformance_bad_params(cls) -> list[dict]:
        return [{"smoothing": -1.0}, {"noise_scale": "loud"}]

    def _validate(self) -> None:
        problems = []
        if not isinstance(self.smoothing, (int, float)) or self.smoothing < 0:
            problems.append(f"smoothing must be a number >= 0 (pixels), got {self.smoothing!r}")
        if not isinstance(self.noise_scale, (int, float)) or self.noise_scale < 0:
            problems.append(f"noise_scale must be a number >= 0, got {self.noise_scale!r}")
        if problems:
            raise UsageError("LabelMeanGenerator: " + "; ".join(problems))

    # -- fit / sample
    def fit(self, train: Dataset, *, seed: int, dp=None, progress: bool = True) -> "LabelMeanGenerator":
        self._validate()
        if dp is not None:
            raise UsageError("LabelMeanGenerator does not support DP-SGD; run without --dp-epsilon")
        im, mk = np.asarray(train.images, np.float64), np.asarray(train.masks)
        self.means_ = np.array([im[mk == k].mean() if (mk == k).any() else 0.0 for k in range(4)])
        self.stds_ = np.array([im[mk == k].std() if (mk == k).any() else 0.0 for k in range(4)])
        self.mask_bank_ = mk.astype(np.uint8).copy()
        return self

    def sample(self, *, masks: np.ndarray | None = None, n: int | None = None, seed: int) -> Dataset:
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
        k = len(masks)
        return Dataset(images=np.clip(images, -1, 1).astype(np.float32), masks=masks,
                       patient_id=np.array([f"syn-{self.name}-{i:06d}" for i in range(k)], dtype=object),
                       source=np.full(k, f"synthetic:{self.name}", dtype=object))

    # -- save / load: config.json + safetensors, never pickles
    def save(self, path) -> None:
        check_is_fitted(self, ("means_", "mask_bank_"))
        with atomic_dir(path) as tmp:
            save_weights(tmp / "weights.safetensors", {"means": torch.tensor(self.means_), "stds": torch.tensor(self.stds_),
                                                       "mask_bank": torch.from_numpy(self.mask_bank_)})
            write_json_atomic(tmp / "config.json", {"format": FORMAT, "format_version": FORMAT_VERSION, "generator": self.name,
                                                    "params": self.get_params()})

    @classmethod
    def load(cls, path) -> "LabelMeanGenerator":
        cfg = read_config(path)
        if cfg.get("generator") != cls.name:
            raise CheckpointError(f"{path}: holds {cfg.get('generator')!r}, not {cls.name!r}")
        gen = cls(**cfg["params"])
        w = load_weights(Path(path) / "weights.safetensors")
        gen.means_, gen.stds_ = w["means"].numpy(), w["stds"].numpy()
        gen.mask_bank_ = w["mask_bank"].numpy()
        return gen
