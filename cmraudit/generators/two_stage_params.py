"""Parameters of the two-stage generators: the shared defaults, the keyword signature and validation.

:class:`TwoStageParams` is a base of :class:`~cmraudit.generators.two_stage.TwoStageGenerator`: the keyword
parameters are ``BASE_DEFAULTS`` plus the plugin's ``image_defaults``; ``param_problems`` collects every problem
with them (the mask network, the noise schedules, both training configs, the sampler and the sizes).
"""
from __future__ import annotations

import inspect
from typing import Any

from ..errors import UsageError
from .diffusion import SAMPLERS, NoiseSpec, UNetSpec
from .presets import COMMON
from .train_config import TrainConfig

BASE_DEFAULTS: dict[str, Any] = {
    **COMMON["quick"],
    "mask_position_bins": 0,  # unconditional mask model (the reference study); the quick preset conditions it
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


class TwoStageParams:
    """Mixin: the specs of the mask network, noise schedules and training configs, and their validation."""

    def _mask_unet(self) -> UNetSpec:
        return UNetSpec(
            tuple(self.mask_channels),
            tuple(self.mask_attention_levels),
            self.mask_num_res_blocks,
            self.mask_norm_num_groups,
            self.mask_num_head_channels,
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
        if int(self.mask_position_bins) < 0:
            p.append(f"mask_position_bins must be >= 0 (0: unconditional mask model), got {self.mask_position_bins}")
        if not 0 <= float(self.cfg_dropout) < 1:
            p.append(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        if int(self.sample_batch_size) < 1:
            p.append(f"sample_batch_size must be >= 1, got {self.sample_batch_size}")
        return p

    def validate_params(self) -> None:
        problems = self.param_problems()
        if problems:
            raise UsageError(f"{type(self).__name__}: invalid parameters: " + "; ".join(problems))


def _signature(defaults: dict[str, Any]) -> inspect.Signature:
    """``(*, name=default, ...)``: the explicit keyword signature of a two-stage generator."""
    kw = inspect.Parameter.KEYWORD_ONLY
    return inspect.Signature([inspect.Parameter(k, kw, default=v) for k, v in defaults.items()])

