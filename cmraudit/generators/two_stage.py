"""Base class of the two-stage generators: mask diffusion (stage 1) → mask-conditioned images (stage 2).

A plugin subclasses :class:`TwoStageGenerator`, declares its image-stage parameters in
``image_defaults`` (and per-preset overrides in ``presets``) and implements three hooks:
``build_image_modules`` (fresh networks), ``image_step_loss`` (one training loss) and
``sample_images`` (reverse process for given one-hot masks). Everything else — parameter
validation (``two_stage_params.py``), data checks, the mask model, training loop, vendor labels,
save/load (``two_stage_io.py``), the synthetic :class:`Dataset` — lives here or in those bases.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..data.dataset import Dataset
from ..cpu import side_by_side_lanes
from ..device import precision_name, select_device
from ..dp import DPConfig, compose_budget, require_dp_support, stage_weights
from ..errors import DataError, UsageError
from .base import BaseGenerator, GeneratorTags, check_is_fitted
from .diffusion import onehot
from .distributed import dist_info, init_distributed
from .dp_stages import DPStages
from .mask_model import MaskDiffusion, n_slice_classes, slice_classes
from .presets import resolve_preset
from .progress import progress_bar
from .side_by_side import fit_side_by_side
from .training import train_loop
from .two_stage_io import TwoStageIO
from .two_stage_params import BASE_DEFAULTS, TwoStageParams, _signature


class TwoStageGenerator(DPStages, TwoStageParams, TwoStageIO, BaseGenerator):
    """Mask model + mask-conditioned image model. See the module docstring for the hooks.

    The keyword parameters are ``BASE_DEFAULTS`` plus the plugin's ``image_defaults``; each subclass gets them
    as its explicit signature (``inspect.signature(cls)``, ``help(cls)``), from which get_params derives."""

    tags: ClassVar[GeneratorTags] = GeneratorTags(conditional=True, two_stage=True, supports_dp=False, has_loss=False)
    image_defaults: ClassVar[dict[str, Any]] = {}
    presets: ClassVar[dict[str, dict]] = {}
    # stages trained on patient data; under DP their noise is calibrated jointly (DPConfig.calibrate)
    dp_stages: ClassVar[tuple[str, ...]] = ("mask_model", "image_model")
    # True when fit_image_stage reads self.mask_model_ (the two stages then train one after the other, never side by
    # side: cmraudit/generators/side_by_side.py)
    image_stage_uses_mask_model: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        defaults = self._defaults()
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise UsageError(
                f"{type(self).__name__}: unknown parameter(s) {unknown}; valid parameters: "
                f"{', '.join(sorted(defaults))}"
            )
        for k, v in {**defaults, **params}.items():
            setattr(self, k, tuple(v) if isinstance(v, list) else v)

    def __getattr__(self, name: str) -> Any:  # only reached when normal lookup fails
        if name == "mask_model_" and "pending_mask_model_" in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: the image stage read self.mask_model_ while the mask model trains beside it "
                "(side by side on the CPU); a plugin whose fit_image_stage needs the trained mask model sets the "
                "class attribute image_stage_uses_mask_model = True (docs/plugins.md)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = _signature(cls._defaults())

    # ------------------------------------------------------------ params
    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        return {**BASE_DEFAULTS, **cls.image_defaults}

    @classmethod
    def from_preset(cls, preset: str = "quick", **overrides: Any) -> "TwoStageGenerator":
        return cls(**{**resolve_preset(preset, cls.presets), **overrides})

    @classmethod
    def conformance_params(cls) -> dict[str, Any]:
        """Micro parameters for :func:`cmraudit.testing.check_generator` (CPU, seconds)."""
        return {**resolve_preset("micro", cls.presets), "device": "cpu"}

    def _mask_model(self) -> MaskDiffusion:
        """A fresh (unfitted) mask model built from this generator's ``mask_*`` parameters."""
        steps = self.sampling_steps if self.mask_sampling_steps is None else self.mask_sampling_steps
        return MaskDiffusion(
            unet=self._mask_unet(),
            noise=self._mask_noise(),
            train=self._train_config(steps=self.mask_steps, epochs=self.mask_epochs),
            sampler=self.sampler,
            sampling_steps=int(steps),
            augment=self.augment,
            size=self.mask_size,
            n_classes=n_slice_classes(int(self.mask_position_bins)),  # 0 bins: 0 classes, unconditional
        )

    # ------------------------------------------------------------ hooks for plugins
    def build_image_modules(self, *, seed: int, n_classes: int | None) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def fit_image_stage(self, images, masks_oh, labels, *, seed, device, work_dir, resume, progress, dp, callback,
                         patient_ids=None) -> dict[str, Any]:
        """Default: train module ``"image"`` with :meth:`image_step_loss`; returns a training summary.

        An override (e.g. an autoencoder stage first) must set ``self.image_modules_`` (name → module,
        each saved as ``<name>.safetensors``) and return a dict with at least ``steps``, ``time_s``, ``losses``.
        ``dp`` is a dict stage name (of ``dp_stages``) → DPConfig (empty without DP); pass
        ``dp=dp.get(name), patient_ids=patient_ids, stage=name`` to each ``train_loop`` and append each
        ``result.dp`` to ``self.dp_budgets_``.
        """
        net = self.build_image_modules(seed=seed + 1, n_classes=self._n_classes())["image"]
        step = self.image_step_loss

        def step_loss(model, idx, gen):
            i = torch.as_tensor(idx, device=images.device)
            return step(model, images[i], masks_oh[i], None if labels is None else labels[i], gen)

        cfg = self._train_config(steps=self.steps, epochs=self.epochs)
        from .snapshots import snapshot_callback  # samples at a few points of training, under `cmraudit run` only

        callback = snapshot_callback(self, net, total=cfg.total_steps(len(images)), size=tuple(images.shape[-2:]),
                                     seed=seed, device=device, dp=bool(dp), callback=callback)
        res = train_loop(
            net,
            step_loss,
            n_items=len(images),
            config=cfg,
            seed=seed + 1,
            device=device,
            work_dir=None if work_dir is None else Path(work_dir) / "image",
            resume=resume,
            progress=progress,
            desc="image model",
            dp=dp.get("image_model"),
            callback=callback,
            patient_ids=patient_ids,
            stage="image_model",
        )
        if res.dp is not None:
            self.dp_budgets_.append(res.dp)
        net.load_state_dict(res.ema_state)
        self.image_modules_ = {"image": net.eval()}
        return res.to_dict() | {"losses": res.losses}

    def image_step_loss(self, model, images, masks_oh, labels, gen) -> torch.Tensor:
        raise NotImplementedError

    def sample_images(
        self, masks_oh: torch.Tensor, *, labels: torch.Tensor | None, seed: int, device: torch.device
    ) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------ fit
    def _n_classes(self) -> int | None:
        return len(self.vendors_) + 1 if self.vendor_conditioning else None

    def _check_data(self, train: Dataset) -> None:
        if not isinstance(train, Dataset):
            raise UsageError(f"fit: train must be a cmraudit Dataset, got {type(train).__name__}")
        if len(train) == 0:
            raise DataError("fit: the training set is empty")
        h, w = train.shape
        if h != w:
            raise DataError(f"fit: images must be square, got {h}×{w}; re-import with --size")
        if self.image_size is not None and h != int(self.image_size):
            raise DataError(
                f"fit: images are {h}×{w} but image_size={self.image_size}; re-import the data with --size "
                f"{self.image_size} "
                f"or pass image_size=None to train at the data's size"
            )
        if self.mask_size is None and h % self._mask_unet().downsample:
            raise DataError(f"fit: image size {h} is not divisible by {self._mask_unet().downsample} (2^(levels-1))")
        if self.mask_size is not None and h % int(self.mask_size):
            raise DataError(
                f"fit: image size {h} is not a multiple of mask_size={self.mask_size}; re-import with --size or change "
                "mask_size"
            )

    def fit(
        self,
        train: Dataset,
        *,
        seed: int,
        dp=None,
        progress: bool = True,
        work_dir: str | os.PathLike | None = None,
        resume: bool = False,
        callback=None,
    ) -> "TwoStageGenerator":
        """Train the mask model and the image model on ``train`` (all its slices).

        On a CPU with two or more threads the two stages train side by side, one thread each
        (:mod:`cmraudit.generators.side_by_side`; ``CMRAUDIT_SIDE_BY_SIDE=0`` trains them one after the other);
        ``callback(step, loss)`` then receives both stages' steps, one call at a time.

        ``work_dir`` keeps resumable training state (``mask/`` and ``image/``); ``resume=True``
        continues an interrupted fit with the same seed and parameters and reaches the same weights.
        """
        self.validate_params()
        stage_dp: dict = {}
        if dp is not None:
            if not isinstance(dp, DPConfig):
                raise UsageError(f"fit: dp must be a cmraudit.dp.DPConfig (what --dp-epsilon builds) or None, "
                                 f"got {type(dp).__name__}")
            require_dp_support(name=self.name, tags=self.tags, dp=dp)
        self._check_data(train)
        patient_ids = [str(p) for p in train.patient_id]
        if dp is not None and dp.enabled:
            self.check_dp()
            stage_dp = dp.calibrate(self._dp_plan(n_items=len(train), n_patients=len(set(patient_ids))))
        self.dp_budgets_ = []
        t0 = time.perf_counter()
        device = init_distributed(select_device(self.device))
        self.vendors_ = sorted({str(v) for v in train.vendor if str(v)})
        images = torch.from_numpy(np.array(train.images, dtype=np.float32))[:, None].to(device)
        masks_oh = onehot(np.asarray(train.masks)).to(device)
        labels = None
        if self.vendor_conditioning:
            vid = {v: i + 1 for i, v in enumerate(self.vendors_)}
            labels = torch.as_tensor([vid.get(str(v), 0) for v in train.vendor], dtype=torch.long, device=device)
        wd = Path(work_dir) if work_dir is not None else None
        mask_model = self._mask_model()
        bins = int(self.mask_position_bins)
        mask_labels = (slice_classes(train.slice_index, train.frame, train.patient_id, position_bins=bins)
                       if bins else None)
        self.__dict__.pop("mask_model_", None)  # a refit's image stage never sees the last fit's mask model

        def fit_mask(cb):
            return mask_model.fit(np.asarray(train.masks), seed=seed, device=device, resume=resume, progress=progress,
                                  work_dir=None if wd is None else wd / "mask", dp=stage_dp.get("mask_model"),
                                  callback=cb, patient_ids=patient_ids, labels=mask_labels)

        def fit_image(cb):
            return self.fit_image_stage(images, masks_oh, labels, seed=seed, device=device, work_dir=wd, resume=resume,
                                        progress=progress, dp=stage_dp, callback=cb, patient_ids=patient_ids)

        together = not stage_dp and dist_info()[1] == 1 and not self.image_stage_uses_mask_model
        if together and side_by_side_lanes(device, 2) >= 2:  # cmraudit/generators/side_by_side.py
            mask_model, image_summary = fit_side_by_side(self, fit_mask, fit_image, callback)
            self.mask_model_ = mask_model
        else:
            fit_mask(callback)
            if mask_model.result_.dp is not None:
                self.dp_budgets_.append(mask_model.result_.dp)
            self.mask_model_ = mask_model
            image_summary = fit_image(callback)
        self.mask_class_freq_ = None if mask_model.class_freq_ is None else mask_model.class_freq_.tolist()
        self.dp_ = None
        if stage_dp:
            self.dp_ = compose_budget(self.dp_budgets_, target_epsilon=float(dp.epsilon),
                                      split=stage_weights(dp.split_weights, list(self.dp_stages)))
        self.image_size_ = int(train.shape[0])
        self.training_time_s_ = time.perf_counter() - t0
        self.seed_ = int(seed)
        self.training_ = {
            "mask": mask_model.result_.to_dict() | {"losses": mask_model.result_.losses},
            "image": image_summary,
            "n_slices": int(len(train)),
            "n_patients": int(len(train.patients)),
            "world_size": dist_info()[1],
            "device": str(device),
            # mixed precision of the training steps (none under DP-SGD): cmraudit.device.autocast
            "precision": "fp32" if dp is not None and dp.enabled else precision_name(device),
        }
        return self

    # ------------------------------------------------------------ sample
    def sample(self, *, masks: np.ndarray | None = None, n: int | None = None, seed: int, vendor: str | None = None,
               progress: bool = False) -> Dataset:
        """Draw synthetic slices. ``n``: masks from the mask model, then images; ``masks``: images for given masks."""
        check_is_fitted(self, ("mask_model_", "image_modules_"))
        if (masks is None) == (n is None):
            raise UsageError(
                "sample: give exactly one of masks=... (paired images) or n=... (masks from the mask model)"
            )
        device = select_device(self.device)
        size = (self.image_size_, self.image_size_)
        if masks is None:
            if int(n) < 1:
                raise UsageError(f"sample: n must be >= 1, got {n}")
            # sampling parameters set after fit (set_params(sampler=..., mask_sampling_steps=...)) reach the mask model
            self.mask_model_.sampler = self.sampler
            self.mask_model_.sampling_steps = int(self.sampling_steps if self.mask_sampling_steps is None
                                                  else self.mask_sampling_steps)
            with progress_bar("sampling masks", total=int(n), enabled=progress) as bar:
                masks = self.mask_model_.sample(
                    int(n),
                    shape=size,
                    seed=seed,
                    device=device,
                    batch_size=int(self.sample_batch_size),
                    on_batch=bar.advance,
                )
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[1:] != size:
            raise UsageError(
                f"sample: masks must be [N, {size[0]}, {size[1]}] (the training size), got shape {masks.shape}"
            )
        if masks.size and (masks.min() < 0 or masks.max() > 3):
            raise UsageError(f"sample: mask labels must be 0..3 (bg, RV, MYO, LV), got {masks.min()}..{masks.max()}")
        labels_all = None
        if vendor is not None:
            if not self.vendor_conditioning:
                raise UsageError(f"sample: vendor={vendor!r} needs a generator trained with vendor_conditioning=True")
            if str(vendor) not in self.vendors_:
                raise UsageError(f"sample: unknown vendor {vendor!r}; this generator knows {self.vendors_}")
            labels_all = torch.full((len(masks),), self.vendors_.index(str(vendor)) + 1, dtype=torch.long)
        out = []
        bs = int(self.sample_batch_size)
        with progress_bar("sampling images", total=len(masks), enabled=progress) as bar:
            for b, start in enumerate(range(0, len(masks), bs)):
                moh = onehot(masks[start : start + bs]).to(device)
                lab = None if labels_all is None else labels_all[start : start + bs].to(device)
                x = self.sample_images(moh, labels=lab, seed=int(seed) * 7919 + b + 1, device=device)
                out.append(x[:, 0].clamp(-1, 1).float().cpu().numpy())
                bar.advance(len(moh))
        images = np.concatenate(out).astype(np.float32) if out else np.zeros((0, *size), np.float32)
        k = len(images)
        return Dataset(
            images=images,
            masks=masks.astype(np.uint8),
            patient_id=np.array([f"syn-{self.name}-{i:06d}" for i in range(k)], dtype=object),
            vendor=np.full(k, "" if vendor is None else str(vendor), dtype=object),
            source=np.full(k, f"synthetic:{self.name}", dtype=object),
            frame=np.full(k, "", dtype=object),
            meta={"generator": self.name, "seed": int(seed)},
        )


TwoStageGenerator.__signature__ = _signature(TwoStageGenerator._defaults())
