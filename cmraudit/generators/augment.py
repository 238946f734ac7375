"""Training augmentation of the reference protocol (docs/design.md § 2): random flips and ±20° rotation.

The same geometric transform is applied to an image batch (bilinear) and its one-hot mask
batch (nearest), so image and labels stay aligned. Randomness comes from a CPU generator.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def flip_rotate(
    tensors: list[torch.Tensor | None],
    *,
    generator: torch.Generator,
    max_degrees: float = 20.0,
    modes: list[str] | None = None,
) -> list[torch.Tensor | None]:
    """Random horizontal/vertical flip and rotation in [-max_degrees, max_degrees] per sample.

    ``tensors``: [N, C, H, W] batches sharing N, H, W (``None`` entries pass through);
    ``modes``: interpolation per tensor ("bilinear" for images, "nearest" for one-hot masks).
    Pixels rotated in from outside take the border value (images) / background (masks).
    """
    ref = next(t for t in tensors if t is not None)
    n, dev = ref.shape[0], ref.device
    modes = modes or ["bilinear"] * len(tensors)
    ang = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    fx = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    fy = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * fx, -sin * fy
    theta[:, 1, 0], theta[:, 1, 1] = sin * fx, cos * fy
    theta = theta.to(dev)
    out: list[torch.Tensor | None] = []
    for t, mode in zip(tensors, modes):
        if t is None:
            out.append(None)
            continue
        grid = F.affine_grid(theta.to(t.dtype), list(t.shape), align_corners=False)
        if mode == "nearest":
            # one-hot in [-1, 1]: shift so background (channel 0) is what fills from outside
            pad = torch.full_like(t[:, :, :1, :1], -1.0)
            pad[:, 0] = 1.0
            r = F.grid_sample(t - pad, grid, mode="nearest", padding_mode="zeros", align_corners=False) + pad
        else:
            r = F.grid_sample(t, grid, mode=mode, padding_mode="border", align_corners=False)
        out.append(r)
    return out
