"""Two-stage flow matching: mask diffusion (core) → conditional flow matching of the image given the mask.

Image model: a MONAI DiffusionModelUNet predicting the velocity of the linear path
``x_s = s·x1 + (1 − s)·x0`` (x0 noise, x1 the image) with target ``x1 − x0``; the mask enters by
concatenation (default, chosen by measurement — see docs/generators.md) or through a MONAI
ControlNet branch (``conditioning="controlnet"``, the MOTFM design of the reference study).
Optional minibatch-OT pairing of noise and images (``ot_pairing``). Sampling integrates the ODE
from s = 0 to 1 with a fixed-step Euler, midpoint or Heun solver; the default (midpoint, 10 steps)
costs 20 network evaluations per image.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from cmraudit.errors import UsageError
from cmraudit.generators.augment import flip_rotate
from cmraudit.generators.base import GeneratorTags, check_is_fitted
from cmraudit.generators.diffusion import UNetSpec, onehot
from cmraudit.generators.noise_hooks import NoisePrediction
from cmraudit.generators.pair_loss import PairLoss
from cmraudit.generators.training import seeded
from cmraudit.generators.two_stage import TwoStageGenerator

from .flow import SolverSpec, noise_like, solve_ode, velocity_loss
from .nets import CONDITIONINGS, build_velocity_net

IMAGE_DEFAULTS = {
    "channels": (32, 64, 64),
    "attention_levels": (False, False, True),
    "num_res_blocks": 1,
    "norm_num_groups": 32,
    "num_head_channels": 32,
    "conditioning": "concat",  # "concat" | "controlnet"
    "solver": "midpoint",  # "euler" | "midpoint" | "heun"
    "ode_steps": 10,  # midpoint × 10 = 20 network evaluations per image
    "ot_pairing": False,  # minibatch optimal-transport pairing of noise and images
}

PRESETS = {
    "micro": {
        "channels": (8, 16),
        "attention_levels": (False, False),
        "norm_num_groups": 8,
        "num_head_channels": 8,
        "steps": 6,
        "ode_steps": 2,
    },
    "quick": {**IMAGE_DEFAULTS, "steps": 500},
    # reference study (MOTFM): midpoint solver with step 0.02 = 50 steps (100 evaluations)
    "paper": {
        "channels": (64, 128, 256, 512),
        "attention_levels": (False, False, True, True),
        "num_res_blocks": 2,
        "norm_num_groups": 32,
        "num_head_channels": 32,
        "steps": None,
        "epochs": 400,
        "solver": "midpoint",
        "ode_steps": 50,
    },
}


class FMGenerator(PairLoss, NoisePrediction, TwoStageGenerator):
    """Mask-conditioned flow matching (the reference study's FM, docs/design.md § 2).

    ``loss(images, masks, t=…)`` is the per-slice velocity MSE for the white-box attacks; ``t`` is on
    the diffusion noise-level grid shared by every generator (0 = clean … num_train_timesteps − 1 =
    pure noise) and maps to flow time ``s = 1 − t / num_train_timesteps``.
    """

    # supports_dp: both stages train through train_loop's DP-SGD hook; minibatch-OT pairing couples the
    # samples of a batch, which per-sample DP-SGD forbids, so ot_pairing=True is refused under DP.
    tags: ClassVar[GeneratorTags] = GeneratorTags(conditional=True, two_stage=True, supports_dp=True, has_loss=True,
                                                  vendor_conditional=True, deterministic_fit=True,
                                                  hooks=("loss", "prediction_pair", "noise_prediction",
                                                         "parameter_gradients", "velocity_loss"))
    image_defaults: ClassVar[dict] = {**IMAGE_DEFAULTS}
    presets: ClassVar[dict] = PRESETS

    # ------------------------------------------------------------ params
    def _unet(self) -> UNetSpec:
        return UNetSpec(
            tuple(self.channels),
            tuple(self.attention_levels),
            self.num_res_blocks,
            self.norm_num_groups,
            self.num_head_channels,
        )

    def _solver(self) -> SolverSpec:
        return SolverSpec(str(self.solver), int(self.ode_steps))

    def param_problems(self) -> list[str]:
        p = super().param_problems() + self._unet().problems("image ") + self._solver().problems()
        if self.conditioning not in CONDITIONINGS:
            p.append(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.image_size is not None and int(self.image_size) % self._unet().downsample:
            p.append(
                f"image_size {self.image_size} is not divisible by {self._unet().downsample} (2^(levels-1) of channels)"
            )
        return p

    def check_dp(self) -> None:
        if self.ot_pairing:
            raise UsageError(
                "fm: ot_pairing=True pairs noise and images across the batch, so one patient's slice changes "
                "the others' losses and per-patient DP-SGD does not hold; use ot_pairing=False with --dp-epsilon"
            )

    # ------------------------------------------------------------ hooks
    def build_image_modules(self, *, seed: int, n_classes: int | None) -> dict[str, torch.nn.Module]:
        with seeded(seed):
            return {
                "image": build_velocity_net(self._unet(), conditioning=self.conditioning, num_class_embeds=n_classes)
            }

    def image_step_loss(self, model, images, masks_oh, labels, gen) -> torch.Tensor:
        if self.augment:
            images, masks_oh = flip_rotate([images, masks_oh], generator=gen, modes=["bilinear", "nearest"])
        if labels is not None:
            drop = torch.rand(len(labels), generator=gen).to(labels.device) < float(self.cfg_dropout)
            labels = torch.where(drop, torch.zeros_like(labels), labels)
        return velocity_loss(
            lambda x, ts: model(x, ts, masks_oh, labels), images, generator=gen, ot=bool(self.ot_pairing)
        )

    def _velocity_fn(self, net, masks_oh, labels):
        w = float(self.guidance_scale)
        uncond = None
        if self.vendor_conditioning:
            uncond = torch.zeros(len(masks_oh), dtype=torch.long, device=masks_oh.device)
            labels = uncond if labels is None else labels

        def fn(x, ts):
            v = net(x, ts, masks_oh, labels)
            if labels is not None and labels is not uncond and w != 1.0:
                vu = net(x, ts, masks_oh, uncond)
                v = vu + w * (v - vu)
            return v

        return fn

    def sample_images(self, masks_oh, *, labels, seed, device) -> torch.Tensor:
        """The ODE from noise to images; the network runs under :func:`cmraudit.device.autocast` (bfloat16 on CUDA and
        on native-bf16 CPUs, as the diffusion samplers do), the solver's updates in float32."""
        from cmraudit.device import autocast

        net = self.image_modules_["image"].to(device).eval()
        x0 = noise_like((len(masks_oh), 1, *masks_oh.shape[2:]), seed=seed, device=device)
        velocity = self._velocity_fn(net, masks_oh, labels)

        def mixed(x, ts):  # solve_ode casts the velocity back to float32
            with autocast(device, training=False):
                return velocity(x, ts)

        return solve_ode(mixed, x0, self._solver()).x

    # ------------------------------------------------------------ white-box hooks
    def _noise_schedule(self, t: int) -> tuple[float, float]:
        u = 1.0 - int(t) / int(self.num_train_timesteps)  # flow time: x_u = u·x1 + (1 − u)·x0, x1 data, x0 noise
        return u, 1.0 - u

    def _predict_noise_batch(self, x_t, masks_oh, t: int):
        net = self.image_modules_["image"]  # device and mode are set by the caller (noise_hooks)
        u = 1.0 - int(t) / int(self.num_train_timesteps)
        v = net(x_t, torch.full((len(x_t),), u, dtype=torch.float32, device=x_t.device), masks_oh,
                self._class_labels(len(x_t), x_t.device))
        return x_t - u * v  # v̂ ≈ x1 − x0, so x0 (the noise) ≈ x_u − u·v̂

    def _pair_batches(self, images, masks, *, t, seed: int, reduction: str) -> list:
        """Per-batch white-box results (flow matching: (predicted velocity, x1 − x0) at flow time s = 1 − t /
        num_train_timesteps); see cmraudit.generators.pair_loss."""
        check_is_fitted(self, ("mask_model_", "image_modules_"))
        images, masks = np.asarray(images, dtype=np.float32), np.asarray(masks)
        if images.shape != masks.shape or images.ndim != 3:
            raise UsageError(f"loss: images and masks must both be [N, H, W], got {images.shape} and {masks.shape}")
        from cmraudit.device import select_device

        device = select_device(self.device)
        net = self.image_modules_["image"].to(device).eval()
        T = int(self.num_train_timesteps)
        tt = np.broadcast_to(np.asarray(t, dtype=np.int64), (len(images),))
        if len(tt) and (tt.min() < 0 or tt.max() >= T):
            raise UsageError(f"loss: t must be in 0..{T - 1} (noise level; 0 = clean), got {tt.min()}..{tt.max()}")
        s_all = torch.as_tensor(1.0 - tt.astype(np.float64) / T, dtype=torch.float32)
        gen = torch.Generator().manual_seed(int(seed))
        labels = torch.zeros(len(images), dtype=torch.long, device=device) if self.vendor_conditioning else None
        out = []
        bs = int(self.sample_batch_size)
        for a in range(0, len(images), bs):
            x1 = torch.as_tensor(images[a : a + bs])[:, None].to(device)
            moh = onehot(masks[a : a + bs]).to(device)
            lab = None if labels is None else labels[a : a + bs]
            res = velocity_loss(
                lambda x, ts: net(x, ts, moh, lab), x1, generator=gen, s=s_all[a : a + bs], reduction=reduction
            )
            out.append(tuple(r.cpu().numpy() for r in res) if reduction == "pair" else res.double().cpu().numpy())
        return out

    # ------------------------------------------------------------ conformance
    @staticmethod
    def conformance_bad_params() -> list[dict]:
        return [{"solver": "rk45"}, {"ode_steps": 0}, {"conditioning": "crossattn"}, {"channels": ()}, {"lr": -1.0}]
