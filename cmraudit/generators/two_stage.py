"""Base class of the two-stage generators: mask diffusion (stage 1) → mask-conditioned images (stage 2).

A plugin subclasses :class:`TwoStageGenerator`, declares its image-stage parameters in
``image_defaults`` (and per-preset overrides in ``presets``) and implements three hooks:
``build_image_modules`` (fresh networks), ``image_step_loss`` (one training loss) and
``sample_images`` (reverse process for given one-hot masks). Everything else — parameter
validation, data checks, the mask model, training loop, vendor labels, save/load, the
synthetic :class:`Dataset` — lives here.
"""
from __future__ import annotations

import inspect
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .. import __version__
from ..data.dataset import Dataset
from ..device import select_device
from ..dp import DPConfig, compose_budget, require_dp_support, stage_weights
from ..errors import CheckpointError, DataError, UsageError
from .base import BaseGenerator, GeneratorTags, check_is_fitted
from .checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    atomic_dir,
    load_weights,
    read_config,
    save_weights,
    write_json_atomic,
)
from .diffusion import SAMPLERS, NoiseSpec, UNetSpec, onehot
from .distributed import dist_info, init_distributed, is_main_process
from .dp_stages import DPStages
from .mask_model import MaskDiffusion
from .presets import COMMON, resolve_preset
from .progress import progress_bar
from .training import TrainConfig, train_loop

BASE_DEFAULTS: dict[str, Any] = {
    **COMMON["quick"],
    "steps": 400,  # image-stage training steps (None: use epochs)
    "epochs": None,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "ema_decay": 0.999,
    "vendor_conditioning": False,  # class embedding of the scanner vendor (classifier-free dropout)
    "cfg_dropout": 0.1,  # probability of dropping the vendor label during training
    "guidance_scale": 1.0,  # classifier-free guidance weight when sampling with vendor=...
    "device": "auto",
}


class TwoStageGenerator(DPStages, BaseGenerator):
    """Mask model + mask-conditioned image model. See the module docstring for the hooks.

    The keyword parameters are ``BASE_DEFAULTS`` plus the plugin's ``image_defaults``; each subclass gets them
    as its explicit signature (``inspect.signature(cls)``, ``help(cls)``), from which get_params derives."""

    tags: ClassVar[GeneratorTags] = GeneratorTags(conditional=True, two_stage=True, supports_dp=False, has_loss=False)
    image_defaults: ClassVar[dict[str, Any]] = {}
    presets: ClassVar[dict[str, dict]] = {}
    # stages trained on patient data; under DP their noise is calibrated jointly (DPConfig.calibrate)
    dp_stages: ClassVar[tuple[str, ...]] = ("mask_model", "image_model")

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

    def _mask_unet(self) -> UNetSpec:
        return UNetSpec(
            tuple(self.mask_channels),
            tuple(self.mask_attention_levels),
            self.mask_num_res_blocks,
            self.mask_norm_num_groups,
            self.mask_num_head_channels,
        )

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
        )

    def _noise(self) -> NoiseSpec:
        return NoiseSpec(self.num_train_timesteps, self.schedule, self.beta_start, self.beta_end)

    def _mask_noise(self) -> NoiseSpec:
        return NoiseSpec(
            self.num_train_timesteps, self.schedule, self.beta_start, self.beta_end, self.mask_prediction_type
        )

    def _train_config(self, *, steps, epochs) -> TrainConfig:
        return TrainConfig(
            steps=steps,
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            grad_clip=self.grad_clip,
            ema_decay=self.ema_decay,
            checkpoint_every=self.checkpoint_every,
        )

    def param_problems(self) -> list[str]:
        """Every problem with the parameters (collected, raised once by :meth:`validate_params`)."""
        p = self._mask_unet().problems("mask_") + self._noise().problems() + self._mask_noise().problems("mask_")
        p += self._train_config(steps=self.mask_steps, epochs=self.mask_epochs).problems("mask model: ")
        p += self._train_config(steps=self.steps, epochs=self.epochs).problems("image model: ")
        if self.sampler not in SAMPLERS:
            p.append(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if int(self.sampling_steps) < 1 or int(self.sampling_steps) > int(self.num_train_timesteps):
            p.append(
                f"sampling_steps must be in 1..num_train_timesteps={self.num_train_timesteps}, got "
                f"{self.sampling_steps}"
            )
        if self.mask_sampling_steps is not None and not 1 <= int(self.mask_sampling_steps) <= int(
            self.num_train_timesteps
        ):
            p.append(
                f"mask_sampling_steps must be None or in 1..num_train_timesteps={self.num_train_timesteps}, got "
                f"{self.mask_sampling_steps}"
            )
        if self.mask_size is None:
            if self.image_size is not None and (
                int(self.image_size) < 8 or int(self.image_size) % self._mask_unet().downsample
            ):
                p.append(
                    f"image_size must be >= 8 and divisible by {self._mask_unet().downsample} (2^(levels-1)), got "
                    f"{self.image_size}"
                )
        elif int(self.mask_size) < 8 or int(self.mask_size) % self._mask_unet().downsample:
            p.append(
                f"mask_size must be None or >= 8 and divisible by {self._mask_unet().downsample} (2^(levels-1) of "
                f"mask_channels), got {self.mask_size}"
            )
        elif self.image_size is not None and int(self.image_size) % int(self.mask_size):
            p.append(f"image_size {self.image_size} must be a multiple of mask_size {self.mask_size}")
        if not 0 <= float(self.cfg_dropout) < 1:
            p.append(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        if int(self.sample_batch_size) < 1:
            p.append(f"sample_batch_size must be >= 1, got {self.sample_batch_size}")
        return p

    def validate_params(self) -> None:
        problems = self.param_problems()
        if problems:
            raise UsageError(f"{type(self).__name__}: invalid parameters: " + "; ".join(problems))

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
        """Train the mask model, then the image model, on ``train`` (all its slices).

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
        mask_model.fit(np.asarray(train.masks), seed=seed, device=device, work_dir=None if wd is None else wd / "mask",
                       resume=resume, progress=progress, dp=stage_dp.get("mask_model"), callback=callback,
                       patient_ids=patient_ids)
        if mask_model.result_.dp is not None:
            self.dp_budgets_.append(mask_model.result_.dp)
        self.mask_model_ = mask_model
        image_summary = self.fit_image_stage(
            images,
            masks_oh,
            labels,
            seed=seed,
            device=device,
            work_dir=wd,
            resume=resume,
            progress=progress,
            dp=stage_dp,
            callback=callback,
            patient_ids=patient_ids,
        )
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

    # ------------------------------------------------------------ save / load
    def _fitted_meta(self) -> dict:
        return {
            "image_size_": self.image_size_,
            "vendors_": list(self.vendors_),
            "training_time_s_": self.training_time_s_,
            "seed_": self.seed_,
            "dp_": getattr(self, "dp_", None),
            "training_": {
                k: ({kk: vv for kk, vv in v.items() if kk != "losses"} if isinstance(v, dict) else v)
                for k, v in self.training_.items()
            },
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` plus one safetensors file per network (EMA weights), atomically."""
        check_is_fitted(self, ("mask_model_", "image_modules_"))
        if not is_main_process():
            return
        cls = type(self)
        with atomic_dir(path) as tmp:
            save_weights(tmp / "mask_model.safetensors", self.mask_model_.state_dict())
            for k, m in self.image_modules_.items():
                save_weights(tmp / f"{k}.safetensors", m.state_dict())
            write_json_atomic(tmp / "config.json", {
                "format": FORMAT, "format_version": FORMAT_VERSION, "generator": self.name,
                "class": f"{cls.__module__}:{cls.__qualname__}", "cmraudit_version": __version__,
                "params": self.get_params(), "fitted": self._fitted_meta(), "modules": sorted(self.image_modules_),
            })

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TwoStageGenerator":
        path = Path(path)
        cfg = read_config(path)
        if cfg.get("generator") != cls.name:
            raise CheckpointError(
                f"{path}: saved generator is {cfg.get('generator')!r}, not {cls.name!r}; load it with its own class or "
                "cmraudit.generators.checkpoint.load_generator"
            )
        params = {k: v for k, v in cfg["params"].items() if k in cls._defaults()}
        for k in (
            "mask_size",
            "mask_sampling_steps",
        ):  # added in 0.1: older checkpoints ran the mask model at full size
            params.setdefault(k, None)
        gen = cls(**params)
        for k, v in cfg["fitted"].items():
            setattr(gen, k, v)
        gen.mask_model_ = gen._mask_model().load_state_dict(load_weights(path / "mask_model.safetensors"))
        modules = gen.build_image_modules(seed=0, n_classes=gen._n_classes())
        for k, m in modules.items():
            try:
                m.load_state_dict(load_weights(path / f"{k}.safetensors"))
            except RuntimeError as e:
                raise CheckpointError(
                    f"{path / (k + '.safetensors')}: weights do not match the network of config.json "
                    f"({str(e).splitlines()[0]})"
                ) from e
            m.eval()
        gen.image_modules_ = modules
        return gen


def _signature(defaults: dict[str, Any]) -> inspect.Signature:
    """``(*, name=default, ...)``: the explicit keyword signature of a two-stage generator."""
    kw = inspect.Parameter.KEYWORD_ONLY
    return inspect.Signature([inspect.Parameter(k, kw, default=v) for k, v in defaults.items()])


TwoStageGenerator.__signature__ = _signature(TwoStageGenerator._defaults())
