"""Shared diffusion pieces: MONAI UNet construction, noise schedules, ε-loss and samplers.

Used by the mask model and by every pixel-space diffusion plugin. Models predict the
noise ε (ε-prediction); images and one-hot masks live in [-1, 1].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..device import autocast
from ..errors import UsageError

SAMPLERS = ("ddpm", "ddim")
SCHEDULES = ("linear_beta", "scaled_linear_beta", "cosine")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


@dataclass(frozen=True)
class UNetSpec:
    """Architecture of a MONAI DiffusionModelUNet (2-D)."""

    channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    norm_num_groups: int = 32
    num_head_channels: int = 32

    def problems(self, prefix: str = "") -> list[str]:
        out = []
        ch, att = tuple(self.channels), tuple(self.attention_levels)
        if not ch or any(int(c) <= 0 for c in ch):
            out.append(f"{prefix}channels must be a non-empty tuple of positive ints, got {ch}")
        if len(att) != len(ch):
            out.append(
                f"{prefix}attention_levels has {len(att)} entries but channels has {len(ch)}; give one bool per level"
            )
        if int(self.num_res_blocks) < 1:
            out.append(f"{prefix}num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if ch and any(int(c) % int(self.norm_num_groups) for c in ch if int(c) > 0):
            out.append(
                f"{prefix}every channel count must be divisible by norm_num_groups={self.norm_num_groups}, got "
                f"channels {ch}"
            )
        return out

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)


def build_unet(
    spec: UNetSpec, *, in_channels: int, out_channels: int, num_class_embeds: int | None = None
) -> torch.nn.Module:
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(int(c) for c in spec.channels),
        attention_levels=tuple(bool(a) for a in spec.attention_levels),
        num_res_blocks=int(spec.num_res_blocks),
        norm_num_groups=int(spec.norm_num_groups),
        num_head_channels=int(spec.num_head_channels),
        num_class_embeds=num_class_embeds,
    )


@dataclass(frozen=True)
class NoiseSpec:
    """Forward process: ``num_train_timesteps`` steps, β schedule from ``beta_start`` to ``beta_end``."""

    num_train_timesteps: int = 1000
    schedule: str = "scaled_linear_beta"
    beta_start: float = 0.0005
    beta_end: float = 0.0195
    prediction_type: str = "epsilon"  # network target: noise ε, clean sample x0 ("sample"), or v

    def problems(self, prefix: str = "") -> list[str]:
        out = []
        if self.prediction_type not in PREDICTION_TYPES:
            out.append(f"{prefix}prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if int(self.num_train_timesteps) < 2:
            out.append(f"{prefix}num_train_timesteps must be >= 2, got {self.num_train_timesteps}")
        if self.schedule not in SCHEDULES:
            out.append(f"{prefix}schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not (0 < float(self.beta_start) < float(self.beta_end) < 1):
            out.append(f"{prefix}need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        return out

    def scheduler(self, sampler: str = "ddpm"):
        from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

        kw = {"num_train_timesteps": int(self.num_train_timesteps), "schedule": self.schedule, "clip_sample": True,
              "prediction_type": self.prediction_type}
        if self.schedule != "cosine":
            kw.update(beta_start=float(self.beta_start), beta_end=float(self.beta_end))
        if sampler == "ddim":
            return DDIMScheduler(**kw)
        if sampler == "ddpm":
            return DDPMScheduler(**kw)
        raise UsageError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def alphas_cumprod(noise: NoiseSpec) -> torch.Tensor:
    return noise.scheduler("ddpm").alphas_cumprod.clone()


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, acp: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε."""
    a = acp.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def eps_loss(
    net: torch.nn.Module,
    x0: torch.Tensor,
    *,
    acp: torch.Tensor,
    generator: torch.Generator,
    cond: torch.Tensor | None = None,
    class_labels: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    reduction: str = "mean",
    prediction_type: str = "epsilon",
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """Denoising MSE: random t (unless given) and noise from ``generator`` (a CPU generator).

    The target is ε (``prediction_type="epsilon"``), x0 (``"sample"``) or v = √ᾱ ε − √(1−ᾱ) x0.
    ``snr_gamma``: Min-SNR-γ loss weighting (Hang et al., ICCV 2023), each sample's error × min(SNR_t, γ) / SNR_t
    for ε, / (SNR_t + 1) for v, × min(SNR_t, γ) for x0 (SNR_t = ᾱ/(1 − ᾱ)); the same weights as diffusers'
    ``compute_snr`` recipe. None: unweighted (the white-box hooks always call it so).
    ``reduction``: "mean" (scalar), "none" (per-sample mean [N]) or "pair" (the maps (prediction,
    target), each [N, C, H, W]: the hook of the FCRE white-box attack).
    """
    n = x0.shape[0]
    if t is None:
        t = torch.randint(0, len(acp), (n,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    t = t.to(x0.device)
    xt = add_noise(x0, eps, t, acp)
    inp = xt if cond is None else torch.cat([xt, cond], dim=1)
    pred = net(inp, timesteps=t, class_labels=class_labels) if class_labels is not None else net(inp, timesteps=t)
    if prediction_type == "sample":
        target = x0
    elif prediction_type == "v_prediction":
        a = acp.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))
        target = a.sqrt() * eps - (1 - a).sqrt() * x0
    else:
        target = eps
    if reduction == "pair":
        return pred.float(), target.float()
    err = F.mse_loss(pred.float(), target.float(), reduction="none")
    if snr_gamma is not None:
        per = err.flatten(1).mean(1) * min_snr_weight(acp.to(x0.device)[t].float(), float(snr_gamma), prediction_type)
        return per if reduction == "none" else per.mean()
    if reduction == "none":
        return err.flatten(1).mean(1)
    return err.mean()


def min_snr_weight(acp_t: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-γ weight per sample for the given target (see :func:`eps_loss`)."""
    snr = acp_t / (1 - acp_t)
    clipped = torch.clamp(snr, max=gamma)
    if prediction_type == "sample":
        return clipped
    if prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


@dataclass
class SamplerSpec:
    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def sample_eps(
    model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    *,
    noise: NoiseSpec,
    sampler: str,
    steps: int,
    seed: int,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Reverse diffusion from N(0, I): ``model_fn(x_t, t_batch) -> ε``. DDPM uses all training steps.

    The network runs under :func:`cmraudit.device.autocast` (bfloat16 on CUDA and on native-bf16 CPUs); the
    sampler's update stays in float32."""
    sched = noise.scheduler(sampler)
    if sampler == "ddim":
        sched.set_timesteps(int(steps))
    else:
        sched.set_timesteps(int(noise.num_train_timesteps))
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(shape, generator=g).to(device)
    gdev = g if device.type == "cpu" else torch.Generator(device=device).manual_seed(int(seed))
    for i, t in enumerate(sched.timesteps):
        tb = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
        with autocast(device, training=False):  # the network in bf16 where that is fast; the update in float32
            eps = model_fn(x, tb).float()
        if sampler == "ddim":
            x, _ = sched.step(eps, int(t), x, eta=0.0, generator=gdev)
        else:
            x, _ = sched.step(eps, int(t), x, generator=gdev)
        if progress is not None:
            progress(i)
    return x


def onehot(masks: torch.Tensor | np.ndarray, num_classes: int = 4) -> torch.Tensor:
    """uint8 label maps [N, H, W] → float one-hot [N, C, H, W] scaled to [-1, 1]."""
    m = masks.long() if isinstance(masks, torch.Tensor) else torch.from_numpy(np.array(masks, dtype=np.int64))
    oh = F.one_hot(m.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).float()
    return oh * 2 - 1


def stack_pairs(pairs: list, image_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Per-batch (prediction, target) arrays [n, 1, H, W] → two [N, H, W] maps (for ``prediction_pair``)."""
    if not pairs:
        empty = np.zeros((0, *tuple(image_shape)[1:]), np.float32)
        return empty, empty.copy()
    return np.concatenate([p for p, _ in pairs])[:, 0], np.concatenate([q for _, q in pairs])[:, 0]
