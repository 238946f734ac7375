"""Registered copy distance by image alignment (module `alignment`; the feature-space name stays `registered`): is
one slice a transformed copy of another?

For a query slice q and a base slice t the **registered residual** is

    ρ(q, t) = min over g ∈ G, φ ∈ P_K of  Σ_W (t − φ(g(q)))² / Σ_W (t − mean_W t)²

— the share of t's variance (inside a central disk W) that the best geometrically aligned and
intensity-mapped view of q leaves unexplained. 0 = an exact copy up to the transform; about 1 =
unrelated. G = the dihedral group (flips, 90° rotations, transposes) × rotations up to
``max_rotation_deg`` × shifts up to ``max_shift_px`` (at 64², scaled with the image size);
P_K = polynomials of degree ``degree`` in the intensity (affine covers contrast and window/level,
the cubic term covers gamma). Both images are blurred (``blur_px``, at 64²) and area-downsampled
first, which makes ρ tolerant of noise, blur and mild elastic deformation.

Why hand-written: scikit-image / SimpleITK registration optimises one pair at a time (≈ 10 ms a
pair here); this evaluates every shift of every view at once — the least-squares fit for all shifts reduces to
K + 2 correlations per view — with FFT cross-correlations at the fine size and one batched GEMM over the few
shifts at the coarse size, in torch.

Search: candidates come from an invariant embedding (``cand`` rows, see
:mod:`cmraudit.privacy.copy_search`); a coarse pass at ``coarse_size``² with an affine map over
the dihedral group × rotations in ``coarse_rot_step_deg`` steps ranks them, and the best
``k_refine`` are refined at ``size``² with the polynomial map, rotations ± ``rot_step_deg``
around the coarse angle, and sub-pixel shifts (parabola through the residual surface).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .pixel import resize_images


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
    r = deg.to(x.dtype) * (math.pi / 180.0)
    c, s = torch.cos(r), torch.sin(r)
    z = torch.zeros_like(r)
    theta = torch.stack([torch.stack([c, -s, z], 1), torch.stack([s, c, z], 1)], 1)
    grid = F.affine_grid(theta, [len(x), 1, *x.shape[-2:]], align_corners=False)
    return F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]


def _disk(size: int, radius: float):
    torch = _torch()
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    return (((yy - c) ** 2 + (xx - c) ** 2) <= radius**2).to(torch.float32)


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


class RegisteredSearch:
    """Registered residual search (see module docstring). Stateless apart from its parameters."""

    def __init__(self, *, size: int = 64, coarse_size: int = 32, max_rotation_deg: float = 20.0,
                 coarse_rot_step_deg: float = 10.0, rot_step_deg: float = 5.0, max_shift_px: float = 4.0,
                 blur_px: float = 1.5, degree: int = 3, k_refine: int = 4, batch: int = 32):
        self.size = size
        self.coarse_size = coarse_size
        self.max_rotation_deg = max_rotation_deg
        self.coarse_rot_step_deg = coarse_rot_step_deg
        self.rot_step_deg = rot_step_deg
        self.max_shift_px = max_shift_px
        self.blur_px = blur_px
        self.degree = degree
        self.k_refine = k_refine
        self.batch = batch

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @property
    def transforms(self) -> str:
        return (
            f"dihedral group × rotations ≤ {self.max_rotation_deg:g}° × shifts ≤ {self.max_shift_px:g} px (at 64²) × "
            f"intensity polynomials of degree {self.degree}; blur {self.blur_px:g} px before comparing"
        )

    # ------------------------------------------------------------------ preparation
    def prepare(self, images: np.ndarray) -> dict:
        """Blurred, downsampled copies of ``images`` [N, H, W] at the coarse and fine sizes (torch tensors)."""
        from scipy import ndimage

        torch = _torch()
        x = np.asarray(images, dtype=np.float32)
        native = x.shape[-1]
        s = self.blur_px * native / 64.0
        if s > 0:
            x = ndimage.gaussian_filter(x, (0, s, s), mode="nearest")
        fine = min(self.size or native, native)
        coarse = min(self.coarse_size or fine, fine)
        return {"native": native, "fine": torch.from_numpy(resize_images(x, fine)),
                "coarse": torch.from_numpy(resize_images(x, coarse))}

    def _shifts(self, size: int, native: int):
        torch = _torch()
        m = max(1, int(math.ceil(self.max_shift_px * size / 64.0 - 1e-9)))
        return m, torch.tensor([d % size for d in range(-m, m + 1)])

    def _angles(self, step: float) -> list[float]:
        n = int(round(self.max_rotation_deg / step)) if step > 0 else 0
        return [i * step for i in range(-n, n + 1)]

    # ------------------------------------------------------------------ search
    def search(self, q: dict, b: dict, cand: np.ndarray, *, k: int | None = None, workers: int | None = None):
        """Registered residuals of each query against its candidate base rows ``cand`` [Q, kc].

        Returns (residuals [Q, kr] ascending, base rows [Q, kr]) for the ``k_refine`` best candidates of
        the coarse pass, refined (kr = min(k or k_refine, kc)). A candidate index < 0 is ignored.
        Chunks of queries run on ``workers`` threads (default: torch's thread count), each op single-threaded:
        many small FFTs scale better across queries than inside one op. Chunks are whole batches, so every
        query is computed in the same batch as on one thread: the result does not depend on ``workers``.
        """
        from concurrent.futures import ThreadPoolExecutor

        torch = _torch()
        cand = np.asarray(cand, dtype=np.int64)
        kr = min(self.k_refine if k is None else max(k, 1), cand.shape[1])
        threads = torch.get_num_threads()
        n_workers = max(1, int(workers or threads))
        per = max(1, math.ceil(len(cand) / (self.batch * n_workers * 4)))  # about 4 chunks per worker
        chunk = self.batch * per
        starts = list(range(0, len(cand), chunk))

        def part(s: int):
            sl = slice(s, s + chunk)
            with torch.no_grad():  # grad mode is per thread
                score, view = self._coarse_all(q["coarse"][sl], b["coarse"], cand[sl])
                order = np.argsort(score, axis=1, kind="stable")[:, :kr]
                rows = np.take_along_axis(cand[sl], order, 1)
                views = np.take_along_axis(view, order, 1)
                D = np.empty((len(rows), kr))
                for t in range(0, len(rows), self.batch):
                    u = slice(t, t + self.batch)
                    D[u] = self._refine(q["fine"][sl][u], b["fine"], rows[u], views[u])
            return D, rows

        torch.set_num_threads(1)  # many small FFTs: one thread per op avoids oversubscription on shared cores
        try:
            if n_workers > 1 and len(starts) > 1:
                with ThreadPoolExecutor(n_workers) as pool:
                    parts = list(pool.map(part, starts))
            else:
                parts = [part(s) for s in starts]
        finally:
            torch.set_num_threads(threads)
        if parts:
            D, c_rows = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        else:
            D, c_rows = np.empty((0, kr)), np.empty((0, kr), np.int64)
        D = np.where(c_rows < 0, np.inf, D)
        o = np.argsort(D, axis=1, kind="stable")
        return np.take_along_axis(D, o, 1), np.take_along_axis(np.where(np.isfinite(D), c_rows, -1), o, 1)

    def _window(self, size: int):
        """Shift indices, the comparison disk W (clear of wrapped and replicated borders), its FFT and area."""
        torch = _torch()
        m, sh = self._shifts(size, size)
        W = _disk(size, size / 2 - 2 * m)
        return sh, W, torch.fft.rfft2(W), float(W.sum())

    def _coarse_all(self, Q, B, cand):
        """Affine-map residual of every view of each query against its candidates, at every shift (coarse size).

        The correlations at the (2m + 1)² shifts are one batched GEMM of the windowed views with the candidate's
        circularly shifted copies (``unfold``): at 32² with m = 2 that is 25 shifts, far fewer than the 32² an FFT
        computes (measured 1.9 against 2.5 ms a query on one core; same residuals to 1e-5).
        """
        torch = _torch()
        F = torch.nn.functional
        size = Q.shape[-1]
        sh, W, _, n = self._window(size)
        m = (len(sh) - 1) // 2
        S = 2 * m + 1
        angles = self._angles(self.coarse_rot_step_deg)
        safe = np.where(cand < 0, 0, cand)
        score = np.empty(cand.shape)
        view = np.empty(cand.shape, dtype=np.int64)
        w_row = W.reshape(1, -1)
        for s in range(0, len(cand), self.batch):
            qb = Q[s : s + self.batch]
            V = torch.stack([_rotate(d, a) for d in dihedral_views(qb) for a in angles], 1) * W  # [b, V, S, S]
            b, nv = V.shape[:2]
            V = V.reshape(b, nv, -1)
            s1 = V.sum(-1)
            var_v = ((V * V).sum(-1) - s1 * s1 / n).clamp_min(1e-9)
            for j in range(cand.shape[1]):
                t = B[torch.from_numpy(safe[s : s + self.batch, j])][:, None]  # [b, 1, size, size]
                # column k of U: t shifted by d = k - m in both axes (t[p - d], as the FFT correlation had it)
                U = F.unfold(F.pad(t, (m, m, m, m), mode="circular"), kernel_size=size).flip(-1)  # [b, size², S²]
                A = (w_row @ U)[:, 0]  # windowed sums of t at each shift [b, S²]
                E = (w_row @ (U * U))[:, 0]
                C = torch.bmm(V, U)  # [b, V, S²]
                var_t = (E - A * A / n).clamp_min(1e-9)[:, None]
                corr = (C - s1[:, :, None] * A[:, None] / n) / torch.sqrt(var_t * var_v[:, :, None])
                r = _subpixel((1 - corr.clamp_min(0) ** 2).reshape(b, nv, S, S))  # sub-pixel shifts matter here
                best, arg = r.min(1)
                score[s : s + self.batch, j] = best.numpy()
                view[s : s + self.batch, j] = arg.numpy()
        score[cand < 0] = np.inf
        return score, view

    def _refine(self, qb, B, rows, views):
        """Polynomial-intensity residual at the fine size for the given (query, candidate, coarse view)."""
        torch = _torch()
        size = qb.shape[-1]
        sh, W, WF, n = self._window(size)
        c_angles = self._angles(self.coarse_rot_step_deg)
        b, kr = rows.shape
        dih = dihedral_views(qb)  # list of [b, S, S]
        out = np.empty((b, kr))
        K = self.degree
        for j in range(kr):
            vi = views[:, j]
            d_idx, a_idx = vi // len(c_angles), vi % len(c_angles)
            base = torch.stack([dih[int(d_idx[i])][i] for i in range(b)])
            ang = torch.tensor([c_angles[int(a)] for a in a_idx], dtype=torch.float32)
            rs = []
            for off in (-self.rot_step_deg, 0.0, self.rot_step_deg):
                a = (ang + off).clamp(-self.max_rotation_deg, self.max_rotation_deg)
                rs.append(_rotate_each(base, a))
            V = torch.stack(rs, 1)  # [b, 3, S, S]
            basis = torch.stack([V**p for p in range(K + 1)], 2) * W  # [b, 3, K+1, S, S]
            bd = basis.double()
            G = torch.einsum("bvkxy,bvlxy->bvkl", bd, bd)
            Ginv = torch.linalg.pinv(G)
            t = B[torch.from_numpy(np.where(rows[:, j] < 0, 0, rows[:, j]))]
            TF, T2F = torch.fft.rfft2(t), torch.fft.rfft2(t * t)
            # float32 FFTs (residual shares of 1e-3 are far above their rounding), float64 for the least squares
            bk = torch.fft.irfft2(torch.fft.rfft2(basis) * TF.conj()[:, None, None], s=(size, size))[..., sh, :][
                ..., sh
            ].double()
            E = torch.fft.irfft2(WF[None] * T2F.conj(), s=(size, size))[:, sh][:, :, sh].double()  # [b, s, s]
            fit = torch.einsum("bvkxy,bvkl,bvlxy->bvxy", bk, Ginv, bk)
            var_t = (E[:, None] - bk[:, :, 0] ** 2 / n).clamp_min(1e-12)  # b_0 = Σ_W t: the same for every view
            rho = ((E[:, None] - fit) / var_t).clamp(0, 1)  # [b, 3, s, s]
            out[:, j] = _subpixel(rho).amin(1).numpy()
        return out
