"""Image operations of the registered search (:mod:`cmraudit.features.alignment`): the dihedral group, cached
rotation grids, the comparison disk and the sub-pixel minimum of a residual surface."""
from __future__ import annotations

import functools
import math


def _torch():
    import torch

    return torch


def dihedral_views(x):
    """The 8 elements of the dihedral group applied to [..., S, S] (identity first)."""
    xt = x.transpose(-1, -2)
    return [x, x.flip(-1), x.flip(-2), x.flip(-1, -2), xt, xt.flip(-1), xt.flip(-2), xt.flip(-1, -2)]


@functools.lru_cache(maxsize=64)
def _rotation_grid(h: int, w: int, deg: float, dtype):
    """The sampling grid of a rotation by ``deg`` degrees, [1, h, w, 2] (cached: the same for every image)."""
    torch = _torch()
    r = math.radians(deg)
    theta = torch.tensor([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0]], dtype=dtype)
    return torch.nn.functional.affine_grid(theta[None], [1, 1, h, w], align_corners=False)


def _rotate(x, deg: float):
    """Rotate [B, S, S] about the centre by ``deg`` degrees (bilinear, border padding)."""
    torch = _torch()
    if deg == 0:
        return x
    grid = _rotation_grid(int(x.shape[-2]), int(x.shape[-1]), float(deg), x.dtype).expand(len(x), -1, -1, -1)
    return torch.nn.functional.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)[:, 0]


def _rotate_each(x, deg):
    """Rotate each image of [B, S, S] by its own angle ``deg`` [B] (degrees; bilinear, border padding)."""
    torch = _torch()
    F = torch.nn.functional
    degs = [float(a) for a in deg.tolist()]
    uniq = sorted(set(degs))  # a handful of angles (the coarse grid ± the fine step): cached grids, gathered
    grids = torch.cat([_rotation_grid(int(x.shape[-2]), int(x.shape[-1]), a, x.dtype) for a in uniq])
    grid = grids[torch.tensor([uniq.index(a) for a in degs])]
    return F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]


def _disk(size: int, radius: float):
    torch = _torch()
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    return (((yy - c) ** 2 + (xx - c) ** 2) <= radius**2).to(torch.float32)


@functools.lru_cache(maxsize=16)
def _disk_box(size: int, radius: float):
    """The disk W cropped to its bounding box [D, D], the box's first row (= column) r0, and the disk's area."""
    W = _disk(size, radius)
    rows = W.sum(1).nonzero()[:, 0]
    r0, D = int(rows[0]), int(rows[-1] - rows[0] + 1)
    return W[r0 : r0 + D, r0 : r0 + D].contiguous(), r0, float(W.sum())


def _subpixel(r):
    """Minimum of [..., n, n] residual surfaces with a parabola through the best integer shift per axis."""
    torch = _torch()
    n = r.shape[-1]
    flat = r.flatten(-2)
    best, arg = flat.min(-1)
    iy, ix = arg // n, arg % n
    out = best.clone()
    for axis, i in ((0, iy), (1, ix)):
        inner = (i > 0) & (i < n - 1)
        lo = torch.where(inner, i - 1, i)
        hi = torch.where(inner, i + 1, i)
        if axis == 0:
            a = flat.gather(-1, (lo * n + ix)[..., None])[..., 0]
            b = flat.gather(-1, (hi * n + ix)[..., None])[..., 0]
        else:
            a = flat.gather(-1, (iy * n + lo)[..., None])[..., 0]
            b = flat.gather(-1, (iy * n + hi)[..., None])[..., 0]
        curv = a + b - 2 * best
        dip = torch.where(inner & (curv > 1e-12), (b - a) ** 2 / (8 * curv.clamp_min(1e-12)), torch.zeros_like(best))
        out = out - dip.clamp(max=best)
    return out.clamp_min(0)
