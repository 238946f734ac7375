"""Image operations of the registered search (:mod:`cmraudit.features.alignment`): the dihedral group, cached
rotation grids, the comparison disk, the sub-pixel minimum of a residual surface, and the shifted inputs and window
sums its correlations read (all shifts, or a window of them around a centre)."""
from __future__ import annotations

import functools
import math


def _torch():
    import torch

    return torch


def dihedral_views(x):
    """The 8 elements of the dihedral group applied to [..., S, S] (identity first)."""
    return [dihedral(x, d) for d in range(8)]


def dihedral(x, d: int):
    """Element ``d`` of :func:`dihedral_views` alone: a transpose for d ≥ 4, then no flip, x, y or both."""
    x = x.transpose(-1, -2) if d >= 4 else x
    axes = ((), (-1,), (-2,), (-1, -2))[d % 4]
    return x.flip(axes) if axes else x


def dihedral_each(x, elem):
    """Each image of [B, S, S] under its own element ``elem`` [B] (ints 0–7) of the dihedral group."""
    torch = _torch()
    out = torch.empty_like(x)
    for d in torch.unique(elem).tolist():
        rows = (elem == d).nonzero()[:, 0]
        out[rows] = dihedral(x[rows], d)
    return out


#: dihedral_views' reflections (flip x, flip y, transpose, anti-transpose); the rest are rotations by k · 90°
_REFLECTIONS = frozenset({1, 2, 4, 7})


@functools.lru_cache(maxsize=64)
def _rotation_grid(h: int, w: int, deg: float, dtype, box: tuple[int, int] | None = None):
    """The sampling grid of a rotation by ``deg`` degrees, [1, h, w, 2], or with ``box`` = (r0, D) its central crop
    [1, D, D, 2] (cached: the same for every image). Each output pixel is sampled on its own, so the cropped grid
    gives the crop of the full rotation, the same floats."""
    torch = _torch()
    r = math.radians(deg)
    theta = torch.tensor([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0]], dtype=dtype)
    grid = torch.nn.functional.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    return grid if box is None else grid[:, box[0] : box[0] + box[1], box[0] : box[0] + box[1]].contiguous()


def _rotate(x, deg: float, box: tuple[int, int] | None = None):
    """Rotate [B, S, S] about the centre by ``deg`` degrees (bilinear, border padding); with ``box`` = (r0, D) only
    the central crop [r0 : r0 + D]² of the result (:func:`_rotation_grid`)."""
    torch = _torch()
    if deg == 0:
        return x if box is None else x[..., box[0] : box[0] + box[1], box[0] : box[0] + box[1]]
    grid = _rotation_grid(int(x.shape[-2]), int(x.shape[-1]), float(deg), x.dtype, box).expand(len(x), -1, -1, -1)
    return torch.nn.functional.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)[:, 0]


def _rotate_each(x, deg, box: tuple[int, int] | None = None):
    """Rotate each image of [B, S, S] by its own angle ``deg`` [B] (degrees; bilinear, border padding); with ``box``
    = (r0, D) only the central crop [r0 : r0 + D]² of the result (:func:`_rotation_grid`)."""
    torch = _torch()
    F = torch.nn.functional
    degs = [float(a) for a in deg.tolist()]
    uniq = sorted(set(degs))  # a handful of angles (the coarse grid ± the fine step): cached grids, gathered
    grids = torch.cat([_rotation_grid(int(x.shape[-2]), int(x.shape[-1]), a, x.dtype, box) for a in uniq])
    grid = grids[torch.tensor([uniq.index(a) for a in degs])]
    return F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]


def gram_inverse(V, Wc, K1: int):
    """Inverse Gram matrices [..., K1, K1] of the bases 1, v, …, v^(K1 − 1) over the window ``Wc`` of the views ``V``
    [..., D, D]: Hankel matrices of the moments Σ_W v⁰ … v^(2 K1 − 2), in float64."""
    torch = _torch()
    vd, p, mom = V.double(), Wc.double().expand(V.shape), []
    for _ in range(2 * K1 - 1):
        mom.append(p.sum((-1, -2)))
        p = p * vd
    hankel = torch.arange(K1)[:, None] + torch.arange(K1)[None]
    return torch.linalg.pinv(torch.stack(mom, -1)[..., hankel])


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


def shifted_input(t, m: int, r0: int, D: int):
    """[..., D + 2m, D + 2m] crop of ``t`` [..., S, S] padded circularly by m: the pixels every shift reaches."""
    torch = _torch()
    lead = t.shape[:-2]
    tp = torch.nn.functional.pad(t.reshape(-1, 1, *t.shape[-2:]), (m, m, m, m), mode="circular")
    return tp[:, 0, r0 : r0 + D + 2 * m, r0 : r0 + D + 2 * m].reshape(*lead, D + 2 * m, D + 2 * m)


def window_sums(x, Wc):
    """Σ_W t(p − d) and Σ_W t(p − d)² at every shift d, [N, (2m+1)²] each, from shifted inputs [N, D+2m, D+2m].

    Each row of the disk W is one contiguous span, so each sum is Σ over W's rows of a difference of two row
    prefix sums (float64): 2 · D gathers per shift instead of a convolution with the disk (oneDNN runs such
    one-channel 49² kernels at ≈ 4 GMAC/s here).
    """
    torch = _torch()
    D = Wc.shape[-1]
    S = x.shape[-1] - D + 1
    cols = torch.arange(D)
    lo = torch.where(Wc > 0, cols, D).amin(1)  # first and last column of each row of W
    hi = torch.where(Wc > 0, cols, -1).amax(1)
    e = torch.arange(S)
    r = (e[:, None] + cols[None])[:, None, :]  # [S(e_y), 1, D] input rows
    c_hi = (e[:, None] + hi[None] + 1)[None]  # [1, S(e_x), D]
    c_lo = (e[:, None] + lo[None])[None]
    xd = x.double()
    out = []
    for v in (xd, xd * xd):
        P = torch.nn.functional.pad(v.cumsum(-1), (1, 0))  # [N, D+2m, D+2m+1], P[..., j] = Σ_{<j}
        s = (P[:, r, c_hi] - P[:, r, c_lo]).sum(-1)  # [N, S, S]: out[e] = Σ_W x(p + e)
        out.append(s.flip(-1, -2).flatten(1).float())  # shift d = m − e
    return out[0], out[1]


def shift_window(x, A, E, centre, m: int, w: int):
    """The shifts d = centre − w … centre + w only (per row; |centre| ≤ m − w): the crop of the shifted inputs ``x``
    [b, D + 2m, D + 2m] a correlation over those shifts reads, [b, D + 2w, D + 2w], and their window sums picked from
    ``A``, ``E`` [b, (2m + 1)²] (row-major over d = −m … m), [b, (2w + 1)²] each. ``centre`` [b, 2] (dy, dx)."""
    torch = _torch()
    b, D = len(x), x.shape[-1] - 2 * m
    lo = m - centre - w  # a correlation's output e ↔ shift d = m − e
    crop = x.unfold(1, D + 2 * w, 1).unfold(2, D + 2 * w, 1)[torch.arange(b), lo[:, 0], lo[:, 1]]
    k = torch.arange(2 * w + 1)
    iy, ix = centre[:, :1] - w + m + k, centre[:, 1:] - w + m + k  # [b, 2w + 1] indices into the 2m + 1 shifts
    flat = (iy[:, :, None] * (2 * m + 1) + ix[:, None, :]).reshape(b, -1)
    return crop, A.gather(1, flat), E.gather(1, flat)
