"""Two-stage latent diffusion: mask diffusion (core) → LDM of the image given the mask.

Image stage in two steps (Rombach et al. 2022; the reference study's LDM, docs/design.md § 2):

* **A — autoencoder**: MONAI AutoencoderKL, 1 → ``ae_latent_channels`` (4) latent channels,
  downsampling 2^(len(ae_channels) − 1) (4× by default: 64² images → 16² latents), trained with
  L1 + image-gradient L1 + a small KL term (offline, no perceptual/adversarial loss), then frozen.
  The latent scale factor is 1 / std of the training latents.
* **B — latent diffusion**: MONAI SPADEDiffusionModelUNet (label_nc = 4) predicting ε in latent
  space; the one-hot mask enters every normalisation layer through SPADE. Scaled-linear β
  0.00085 → 0.012; DDPM (all steps) or DDIM (``sampling_steps``) sampling; latents are decoded.

``loss(images, masks, t=…)`` is the latent ε-prediction MSE (white-box attacks).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from cmraudit.errors import DataError, UsageError
from cmraudit.generators.augment import flip_rotate
from cmraudit.generators.base import GeneratorTags, check_is_fitted
from cmraudit.generators.diffusion import (
    NoiseSpec,
    UNetSpec,
    add_noise,
    alphas_cumprod,
    onehot,
    sample_eps,
)
from cmraudit.generators.training import seeded, train_loop
from cmraudit.generators.two_stage import TwoStageGenerator

from .autoencoder import (
    AutoencoderSpec,
    autoencoder_loss,
    build_autoencoder,
    encode_mean,
    latent_scale_factor,
)

IMAGE_DEFAULTS: dict[str, Any] = {
    # stage A: autoencoder
    "ae_channels": (32, 64, 64),
    "ae_num_res_blocks": 1,
    "ae_norm_num_groups": 32,
    "ae_latent_channels": 4,
    "ae_attention": False,
    "ae_steps": 400,
    "ae_epochs": None,
    "ae_lr": 1e-3,
    "ae_kl_weight": 1e-6,
    "ae_grad_weight": 0.5,
    "ae_sample_posterior": False,  # decode μ + σ·ε (KL-VAE recipe) instead of μ while training stage A
    # stage B: latent SPADE UNet
    "channels": (64, 128, 128),
    "attention_levels": (False, False, True),
    "num_res_blocks": 1,
    "norm_num_groups": 32,
    "num_head_channels": 32,
    "spade_channels": 32,  # hidden channels of each SPADE block's MLP
    "latent_schedule": "scaled_linear_beta",
    "latent_beta_start": 0.00085,
    "latent_beta_end": 0.012,
}

PRESETS = {
    "micro": {
        "ae_channels": (8, 8),
        "ae_norm_num_groups": 8,
        "ae_steps": 6,
        "channels": (8, 16),
        "attention_levels": (False, False),
        "norm_num_groups": 8,
        "num_head_channels": 8,
        "spade_channels": 8,
        "steps": 6,
    },
    "quick": {**IMAGE_DEFAULTS, "steps": 500},
    # reference study: VQ-VAE-sized autoencoder with 4 latent channels (32² latents at 128²), SPADE UNet, 1000 steps
    "paper": {
        "ae_channels": (64, 128, 128),
        "ae_num_res_blocks": 2,
        "ae_steps": None,
        "ae_epochs": 100,
        "ae_lr": 1e-4,
        "channels": (128, 256, 512),
        "attention_levels": (False, True, True),
        "num_res_blocks": 2,
        "spade_channels": 128,
        "steps": None,
        "epochs": 400,
    },
}


@dataclass(frozen=True)
class LatentNoiseSpec(NoiseSpec):
    """Forward process in latent space: like :class:`NoiseSpec`, but the schedulers never clip the
    predicted x0 to [-1, 1] (scaled latents have unit variance, not a bounded range)."""

    def scheduler(self, sampler: str = "ddpm"):
        sched = super().scheduler(sampler)
        sched.clip_sample = False
        return sched


def mask_to_seg(masks_oh: torch.Tensor) -> torch.Tensor:
    """One-hot mask in [-1, 1] → {0, 1} segmentation map for SPADE."""
    return (masks_oh + 1) * 0.5


class LDMGenerator(TwoStageGenerator):
    """Mask-conditioned latent diffusion with SPADE (the reference study's LDM)."""

    # supports_dp: mask model, AutoencoderKL and latent UNet all train through train_loop's DP-SGD hook
    # (a VQ-VAE's EMA codebook would escape DP-SGD: cmraudit.dp.fix_module refuses it).
    tags: ClassVar[GeneratorTags] = GeneratorTags(conditional=True, two_stage=True, supports_dp=True, has_loss=True,
                                                  vendor_conditional=True, deterministic_fit=True, hooks=("loss",))
    image_defaults: ClassVar[dict] = {**IMAGE_DEFAULTS}
    presets: ClassVar[dict] = PRESETS
    dp_stages: ClassVar[tuple[str, ...]] = ("mask_model", "autoencoder", "image_model")

    # ------------------------------------------------------------ params
    def _ae(self) -> AutoencoderSpec:
        return AutoencoderSpec(tuple(self.ae_channels), int(self.ae_num_res_blocks), int(self.ae_norm_num_groups),
                               int(self.ae_latent_channels), bool(self.ae_attention))

    def _unet(self) -> UNetSpec:
        return UNetSpec(
            tuple(self.channels),
            tuple(self.attention_levels),
            self.num_res_blocks,
            self.norm_num_groups,
            self.num_head_channels,
        )

    def _latent_noise(self) -> LatentNoiseSpec:
        return LatentNoiseSpec(
            self.num_train_timesteps, self.latent_schedule, self.latent_beta_start, self.latent_beta_end
        )

    def _ae_train_config(self):
        return replace(self._train_config(steps=self.ae_steps, epochs=self.ae_epochs), lr=float(self.ae_lr))

    def _dp_train_configs(self):
        return {**super()._dp_train_configs(), "autoencoder": self._ae_train_config()}

    def param_problems(self) -> list[str]:
        p = super().param_problems() + self._ae().problems() + self._unet().problems("image ")
        p += self._latent_noise().problems("latent_") + self._ae_train_config().problems("autoencoder: ")
        if int(self.spade_channels) < 1:
            p.append(f"spade_channels must be >= 1, got {self.spade_channels}")
        if float(self.ae_kl_weight) < 0 or float(self.ae_grad_weight) < 0:
            p.append(f"ae_kl_weight and ae_grad_weight must be >= 0, got {self.ae_kl_weight}, {self.ae_grad_weight}")
        f = self._ae().downsample * self._unet().downsample
        if self.image_size is not None and int(self.image_size) % f:
            p.append(
                f"image_size {self.image_size} must be divisible by {f} (autoencoder ×{self._ae().downsample} · latent "
                f"UNet ×{self._unet().downsample})"
            )
        return p

    def _check_data(self, train) -> None:
        super()._check_data(train)
        f = self._ae().downsample * self._unet().downsample
        if train.shape[0] % f:
            raise DataError(
                f"fit: image size {train.shape[0]} is not divisible by {f} (autoencoder × latent UNet downsampling)"
            )

    # ------------------------------------------------------------ modules
    def build_image_modules(self, *, seed: int, n_classes: int | None) -> dict[str, torch.nn.Module]:
        from monai.networks.nets import SPADEDiffusionModelUNet

        spec = self._unet()
        with seeded(seed):
            ae = build_autoencoder(self._ae())
        with seeded(seed + 1):
            unet = SPADEDiffusionModelUNet(
                spatial_dims=2,
                in_channels=int(self.ae_latent_channels),
                out_channels=int(self.ae_latent_channels),
                label_nc=4,
                channels=tuple(int(c) for c in spec.channels),
                attention_levels=tuple(bool(a) for a in spec.attention_levels),
                num_res_blocks=int(spec.num_res_blocks),
                norm_num_groups=int(spec.norm_num_groups),
                num_head_channels=int(spec.num_head_channels),
                num_class_embeds=n_classes,
                spade_intermediate_channels=int(self.spade_channels),
            )
        return {"autoencoder": ae, "image": unet}

    def _acp(self) -> torch.Tensor:
        if getattr(self, "_acp_cache", None) is None:
            self._acp_cache = alphas_cumprod(self._latent_noise())
        return self._acp_cache

    # ------------------------------------------------------------ fit (stage A then B)
    def fit_image_stage(self, images, masks_oh, labels, *, seed, device, work_dir, resume, progress, dp, callback,
                         patient_ids=None) -> dict[str, Any]:
        modules = self.build_image_modules(seed=seed + 1, n_classes=self._n_classes())
        ae, unet = modules["autoencoder"], modules["image"]
        wd = None if work_dir is None else Path(work_dir)
        kl_w, grad_w, augment = float(self.ae_kl_weight), float(self.ae_grad_weight), bool(self.augment)
        sample_post = bool(self.ae_sample_posterior)

        def ae_step(model, idx, gen):
            x = images[torch.as_tensor(idx, device=images.device)]
            if augment:
                (x,) = flip_rotate([x], generator=gen, modes=["bilinear"])
            # under DP, model is Opacus's GradSampleModule: its hooks sit on the inner layers, so calling the
            # wrapped AutoencoderKL's encode/decode still records per-sample gradients
            return autoencoder_loss(
                getattr(model, "_module", model),
                x,
                kl_weight=kl_w,
                grad_weight=grad_w,
                generator=gen,
                sample_posterior=sample_post,
            )

        res_a = train_loop(
            ae,
            ae_step,
            n_items=len(images),
            config=self._ae_train_config(),
            seed=seed + 2,
            device=device,
            work_dir=None if wd is None else wd / "autoencoder",
            resume=resume,
            progress=progress,
            desc="autoencoder",
            dp=dp.get("autoencoder"),
            callback=callback,
            patient_ids=patient_ids,
            stage="autoencoder",
        )
        ae.load_state_dict(res_a.ema_state)
        ae.eval().requires_grad_(False)
        z = encode_mean(ae, images)
        # the latent scale is a statistic over all training slices: not DP, so under DP it is fixed to 1
        scale = 1.0 if dp.get("image_model") is not None else latent_scale_factor(z)
        latents = z * scale
        self.scale_factor_ = scale

        def ldm_step(model, idx, gen):
            i = torch.as_tensor(idx, device=images.device)
            moh, lab = masks_oh[i], None if labels is None else labels[i]
            if augment:
                x, moh = flip_rotate([images[i], moh], generator=gen, modes=["bilinear", "nearest"])
                with torch.no_grad():
                    z0 = ae.encode(x)[0] * scale
            else:
                z0 = latents[i]
            if lab is not None:
                drop = torch.rand(len(lab), generator=gen).to(lab.device) < float(self.cfg_dropout)
                lab = torch.where(drop, torch.zeros_like(lab), lab)
            return self._latent_eps_loss(model, z0, moh, lab, generator=gen)

        res_b = train_loop(
            unet,
            ldm_step,
            n_items=len(images),
            config=self._train_config(steps=self.steps, epochs=self.epochs),
            seed=seed + 1,
            device=device,
            work_dir=None if wd is None else wd / "image",
            resume=resume,
            progress=progress,
            desc="latent diffusion",
            dp=dp.get("image_model"),
            callback=callback,
            patient_ids=patient_ids,
            stage="image_model",
        )
        self.dp_budgets_ += [r.dp for r in (res_a, res_b) if r.dp is not None]
        unet.load_state_dict(res_b.ema_state)
        self.image_modules_ = {"autoencoder": ae, "image": unet.eval()}
        return {"autoencoder": res_a.to_dict(), "latent_scale_factor": scale,
                "latent_shape": list(latents.shape[1:]), **res_b.to_dict(), "losses": res_b.losses}

    def _latent_eps_loss(self, net, z0, masks_oh, labels, *, generator, t=None, reduction="mean") -> torch.Tensor:
        """ε-prediction MSE in latent space, the mask given to SPADE; t and noise from ``generator`` unless t is
        given."""
        acp = self._acp()
        n = z0.shape[0]
        if t is None:
            t = torch.randint(0, len(acp), (n,), generator=generator)
        eps = torch.randn(z0.shape, generator=generator).to(z0.device)
        t = t.to(z0.device)
        zt = add_noise(z0, eps, t, acp)
        kw = {} if labels is None else {"class_labels": labels}
        pred = net(zt, timesteps=t, seg=mask_to_seg(masks_oh), **kw)
        err = F.mse_loss(pred.float(), eps.float(), reduction="none")
        return err.flatten(1).mean(1) if reduction == "none" else err.mean()

    # ------------------------------------------------------------ sample
    def sample_images(self, masks_oh, *, labels, seed, device) -> torch.Tensor:
        ae = self.image_modules_["autoencoder"].to(device).eval()
        unet = self.image_modules_["image"].to(device).eval()
        seg = mask_to_seg(masks_oh)
        w = float(self.guidance_scale)
        uncond = None
        if self.vendor_conditioning:
            uncond = torch.zeros(len(masks_oh), dtype=torch.long, device=device)
            labels = uncond if labels is None else labels

        def model_fn(z, t):
            if labels is None:
                return unet(z, timesteps=t, seg=seg)
            eps = unet(z, timesteps=t, seg=seg, class_labels=labels)
            if w != 1.0 and labels is not uncond:
                eps_u = unet(z, timesteps=t, seg=seg, class_labels=uncond)
                eps = eps_u + w * (eps - eps_u)
            return eps

        f = self._ae().downsample
        shape = (len(masks_oh), int(self.ae_latent_channels), masks_oh.shape[2] // f, masks_oh.shape[3] // f)
        z = sample_eps(
            model_fn,
            shape,
            noise=self._latent_noise(),
            sampler=self.sampler,
            steps=self.sampling_steps,
            seed=seed,
            device=device,
        )
        with torch.no_grad():
            return ae.decode(z / float(self.scale_factor_))

    # ------------------------------------------------------------ stage A access, white-box loss
    @torch.no_grad()
    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """Autoencoder reconstruction decode(encode_mean(x)) of images float [N, H, W] in [-1, 1] (clamped)."""
        check_is_fitted(self, ("mask_model_", "image_modules_"))
        from cmraudit.device import select_device

        from .autoencoder import reconstruct

        device = select_device(self.device)
        ae = self.image_modules_["autoencoder"].to(device).eval()
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None].to(device)
        return reconstruct(ae, x)[:, 0].clamp(-1, 1).cpu().numpy()

    @torch.no_grad()
    def loss(self, images: np.ndarray, masks: np.ndarray, *, t: int | np.ndarray, seed: int = 0) -> np.ndarray:
        """Per-slice latent ε-prediction MSE at timestep(s) ``t`` (0..num_train_timesteps − 1), fixed noise from
        ``seed``.

        The image is encoded to its (scaled) posterior mean; lower loss ⇒ the model fits the
        slice better. ``images`` float [N, H, W] in [-1, 1]; ``masks`` uint8 [N, H, W]; returns float64 [N].
        """
        check_is_fitted(self, ("mask_model_", "image_modules_"))
        images, masks = np.asarray(images, dtype=np.float32), np.asarray(masks)
        if images.shape != masks.shape or images.ndim != 3:
            raise UsageError(f"loss: images and masks must both be [N, H, W], got {images.shape} and {masks.shape}")
        from cmraudit.device import select_device

        device = select_device(self.device)
        ae = self.image_modules_["autoencoder"].to(device).eval()
        unet = self.image_modules_["image"].to(device).eval()
        T = int(self.num_train_timesteps)
        tt = np.broadcast_to(np.asarray(t, dtype=np.int64), (len(images),))
        if len(tt) and (tt.min() < 0 or tt.max() >= T):
            raise UsageError(f"loss: t must be in 0..{T - 1}, got {tt.min()}..{tt.max()}")
        gen = torch.Generator().manual_seed(int(seed))
        out = []
        bs = int(self.sample_batch_size)
        for a in range(0, len(images), bs):
            x = torch.as_tensor(images[a : a + bs])[:, None].to(device)
            z0 = ae.encode(x)[0] * float(self.scale_factor_)
            moh = onehot(masks[a : a + bs]).to(device)
            lab = torch.zeros(len(x), dtype=torch.long, device=device) if self.vendor_conditioning else None
            out.append(
                self._latent_eps_loss(
                    unet, z0, moh, lab, generator=gen, t=torch.as_tensor(tt[a : a + bs].copy()), reduction="none"
                )
                .double()
                .cpu()
                .numpy()
            )
        return np.concatenate(out) if out else np.zeros(0)

    # ------------------------------------------------------------ save / load
    def _fitted_meta(self) -> dict:
        return super()._fitted_meta() | {"scale_factor_": float(self.scale_factor_)}

    @staticmethod
    def conformance_bad_params() -> list[dict]:
        return [
            {"ae_channels": ()},
            {"ae_latent_channels": 0},
            {"latent_beta_start": 0.5},
            {"channels": ()},
            {"sampler": "euler"},
        ]
