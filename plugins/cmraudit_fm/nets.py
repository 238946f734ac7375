"""Mask-conditioned velocity networks: MONAI DiffusionModelUNet with the mask concatenated, or a
UNet plus a MONAI ControlNet branch that carries the mask (MOTFM's design).

Both expose ``forward(x, timesteps, cond, class_labels=None)``: ``x`` the state [N, C, H, W],
``timesteps`` float [N] (s · 1000), ``cond`` the one-hot mask [N, 4, H, W] in [-1, 1].
"""
from __future__ import annotations

import torch
from torch import nn

from cmraudit.generators.diffusion import UNetSpec, build_unet

CONDITIONINGS = ("concat", "controlnet")


class ConcatUNet(nn.Module):
    """DiffusionModelUNet on ``cat([x, cond])`` (C + 4 input channels)."""

    def __init__(
        self, spec: UNetSpec, *, channels: int = 1, cond_channels: int = 4, num_class_embeds: int | None = None
    ):
        super().__init__()
        self.unet = build_unet(
            spec, in_channels=channels + cond_channels, out_channels=channels, num_class_embeds=num_class_embeds
        )

    def forward(self, x, timesteps, cond, class_labels=None):
        inp = torch.cat([x, cond.to(x.dtype)], 1)
        if class_labels is None:
            return self.unet(inp, timesteps=timesteps)
        return self.unet(inp, timesteps=timesteps, class_labels=class_labels)


class ControlNetUNet(nn.Module):
    """DiffusionModelUNet on ``x`` plus a MONAI ControlNet on (``x``, ``cond``) whose zero-initialised
    outputs are added to the UNet's skip connections and middle block (trained jointly)."""

    def __init__(
        self,
        spec: UNetSpec,
        *,
        channels: int = 1,
        cond_channels: int = 4,
        num_class_embeds: int | None = None,
        embedding_channels: int = 16,
    ):
        super().__init__()
        from monai.networks.nets import ControlNet

        self.unet = build_unet(spec, in_channels=channels, out_channels=channels, num_class_embeds=num_class_embeds)
        self.controlnet = ControlNet(
            spatial_dims=2, in_channels=channels, channels=tuple(int(c) for c in spec.channels),
            attention_levels=tuple(bool(a) for a in spec.attention_levels), num_res_blocks=int(spec.num_res_blocks),
            norm_num_groups=int(spec.norm_num_groups), num_head_channels=int(spec.num_head_channels),
            num_class_embeds=num_class_embeds, conditioning_embedding_in_channels=cond_channels,
            conditioning_embedding_num_channels=(int(embedding_channels),),  # no downsampling: mask at image size
        )

    def forward(self, x, timesteps, cond, class_labels=None):
        kw = {} if class_labels is None else {"class_labels": class_labels}
        down, mid = self.controlnet(x=x, timesteps=timesteps, controlnet_cond=cond.to(x.dtype), **kw)
        return self.unet(
            x, timesteps=timesteps, down_block_additional_residuals=down, mid_block_additional_residual=mid, **kw
        )


def build_velocity_net(spec: UNetSpec, *, conditioning: str, num_class_embeds: int | None = None) -> nn.Module:
    if conditioning == "concat":
        return ConcatUNet(spec, num_class_embeds=num_class_embeds)
    if conditioning == "controlnet":
        return ControlNetUNet(spec, num_class_embeds=num_class_embeds)
    raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
