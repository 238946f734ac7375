"""Stage A of the LDM: a MONAI AutoencoderKL trained with offline losses only, then frozen.

Loss per batch: L1 reconstruction + ``grad_weight`` · L1 of the image gradients (finite
differences; keeps edges sharp without a pretrained perceptual network) + ``kl_weight`` · KL of
the posterior to N(0, I). No perceptual (LPIPS) or adversarial term: nothing is downloaded.
The latent scale factor (1 / standard deviation of the posterior means over the training set)
is computed from data after training, so the diffusion stage sees latents of unit variance.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AutoencoderSpec:
    """AutoencoderKL (2-D, 1 channel): downsampling factor 2^(len(channels) − 1), ``latent_channels`` latents."""

    channels: tuple[int, ...] = (32, 64, 64)
    num_res_blocks: int = 1
    norm_num_groups: int = 32
    latent_channels: int = 4
    attention: bool = False  # non-local attention in the encoder/decoder middle blocks

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def problems(self, prefix: str = "ae_") -> list[str]:
        out = []
        ch = tuple(self.channels)
        if not ch or any(int(c) <= 0 for c in ch):
            out.append(f"{prefix}channels must be a non-empty tuple of positive ints, got {ch}")
        elif any(int(c) % int(self.norm_num_groups) for c in ch):
            out.append(f"{prefix}channels {ch} must all be divisible by {prefix}norm_num_groups={self.norm_num_groups}")
        if int(self.num_res_blocks) < 1:
            out.append(f"{prefix}num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if int(self.latent_channels) < 1:
            out.append(f"{prefix}latent_channels must be >= 1, got {self.latent_channels}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def build_autoencoder(spec: AutoencoderSpec) -> nn.Module:
    from monai.networks.nets import AutoencoderKL

    ch = tuple(int(c) for c in spec.channels)
    return AutoencoderKL(
        spatial_dims=2, in_channels=1, out_channels=1, channels=ch, attention_levels=(False,) * len(ch),
        num_res_blocks=int(spec.num_res_blocks), latent_channels=int(spec.latent_channels),
        norm_num_groups=int(spec.norm_num_groups), with_encoder_nonlocal_attn=bool(spec.attention),
        with_decoder_nonlocal_attn=bool(spec.attention),
    )


def image_gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the horizontal and vertical finite differences of ``a`` and ``b``."""
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    return 0.5 * (dx.abs().mean() + dy.abs().mean())


def autoencoder_loss(
    ae: nn.Module,
    x: torch.Tensor,
    *,
    kl_weight: float,
    grad_weight: float,
    generator: torch.Generator,
    sample_posterior: bool = False,
) -> torch.Tensor:
    """L1 + grad_weight · gradient-L1 + kl_weight · KL for a batch ``x`` [N, 1, H, W] in [-1, 1].

    ``sample_posterior=True`` decodes z = μ + σ·ε (the KL-VAE recipe; ε from ``generator``, CPU);
    ``False`` decodes μ. With the tiny KL weight of LDM autoencoders the posterior noise only
    slows training (σ starts at 1 and is pushed down by the reconstruction loss alone), and the
    diffusion stage encodes with μ anyway, so the short CPU presets decode μ.
    """
    z_mu, z_sigma = ae.encode(x)
    z = z_mu
    if sample_posterior:
        z = z_mu + z_sigma * torch.randn(z_mu.shape, generator=generator).to(z_mu.device, z_mu.dtype)
    recon = ae.decode(z)
    rec = F.l1_loss(recon.float(), x.float())
    kl = (
        0.5
        * (z_mu.float().pow(2) + z_sigma.float().pow(2) - torch.log(z_sigma.float().pow(2) + 1e-12) - 1)
        .flatten(1)
        .sum(1)
        .mean()
    )
    loss = rec + float(kl_weight) * kl
    if grad_weight:
        loss = loss + float(grad_weight) * image_gradient_l1(recon.float(), x.float())
    return loss


@torch.no_grad()
def encode_mean(ae: nn.Module, x: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
    """Posterior means z_mu [N, latent_channels, H/f, W/f] of images ``x`` [N, 1, H, W] (deterministic)."""
    out = [ae.encode(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else x.new_zeros((0,))


def latent_scale_factor(z: torch.Tensor) -> float:
    """1 / standard deviation of the latents (Rombach et al. 2022): scaled latents have unit variance."""
    sd = float(z.float().std())
    return 1.0 / sd if sd > 1e-8 else 1.0


@torch.no_grad()
def reconstruct(ae: nn.Module, x: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
    """Deterministic reconstruction decode(z_mu) of images ``x`` [N, 1, H, W]."""
    out = [ae.decode(ae.encode(x[i : i + batch_size])[0]) for i in range(0, len(x), batch_size)]
    return torch.cat(out)
