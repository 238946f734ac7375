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
K + 2 correlations per view, two of which (Σ_W t, Σ_W t²) depend on the base slice alone and are computed once
per slice — with one grouped ``conv2d`` per batch of queries at each size, over the few shifts only, in torch
(about 0.53 ms a query on 2 cores at 64² in session 10, 1.15–1.22× less since; docs/benchmarks.md).

Search: candidates come from an invariant embedding (``cand`` rows, see
:mod:`cmraudit.privacy.copy_search`); a coarse pass at ``coarse_size``² with an affine map over
the dihedral group × rotations in ``coarse_rot_step_deg`` steps ranks them, and the best
``k_refine`` are refined at ``size``² with the polynomial map, rotations ± ``rot_step_deg``
around the coarse angle, and sub-pixel shifts (parabola through the residual surface). The refinement evaluates the
shifts within ``fine_window_px`` (2) of the coarse pass's best shift (the window kept inside the ±``max_shift_px``
domain); a pair whose best shift lands on the window's edge, with the domain going on beyond it, is refined over every
shift. ``fine_window_px=None`` refines every shift for every pair: 1.2× slower. On the phantom the window changed
0.6 % of the residuals of novel slices to their spectral candidates (4000 pairs), by at most 1.8 % of their value
(the window's best is another local minimum), and no copy's; the seed sweep's verdicts are unchanged
(bench/bench_copy_sweep.py, docs/privacy.md).
"""
from __future__ import annotations

import math

import numpy as np

from .pixel import resize_images


from .registration_ops import (  # noqa: F401 - dihedral_views, _disk and _rotate_each are used by the tests too
    _REFLECTIONS,
    _disk,
    _disk_box,
    _rotate,
    _rotate_each,
    _subpixel,
    _torch,
    dihedral_each,
    dihedral_views,
    gram_inverse,
    shift_window,
    shifted_input,
    window_sums,
)


class RegisteredSearch:
    """Registered residual search (see module docstring). Stateless apart from its parameters."""

    def __init__(self, *, size: int = 64, coarse_size: int = 32, max_rotation_deg: float = 20.0,
                 coarse_rot_step_deg: float = 10.0, rot_step_deg: float = 5.0, max_shift_px: float = 4.0,
                 blur_px: float = 1.5, degree: int = 3, k_refine: int = 4, batch: int = 32,
                 fine_window_px: int | None = 2):
        vars(self).update({k: v for k, v in locals().items() if k != "self"})  # every parameter, as given

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

        from ..cpu import map_chunks

        torch = _torch()
        images = images if hasattr(images, "shape") else np.asarray(images, dtype=np.float32)
        native = images.shape[-1]
        s = self.blur_px * native / 64.0
        fine = min(self.size or native, native)
        coarse = min(self.coarse_size or fine, fine)

        def part(sl: slice):  # image by image, so chunks on threads give the same floats as one pass
            x = np.asarray(images[sl], dtype=np.float32)
            if s > 0:
                x = ndimage.gaussian_filter(x, (0, s, s), mode="nearest")
            return resize_images(x, fine), resize_images(x, coarse)

        parts = map_chunks(part, len(images), 1024) or [part(slice(0, 0))]
        return {"native": native, "fine": torch.from_numpy(np.concatenate([p[0] for p in parts])),
                "coarse": torch.from_numpy(np.concatenate([p[1] for p in parts]))}

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
        many small convolutions scale better across queries than inside one op. Chunks are whole batches, so every
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

        sums = self._base_sums(b, cand)

        def part(s: int):
            sl = slice(s, s + chunk)
            with torch.no_grad():  # grad mode is per thread
                score, view, shift = self._coarse_all(q["coarse"][sl], b["coarse"], cand[sl], sums=sums["coarse"])
                order = np.argsort(score, axis=1, kind="stable")[:, :kr]
                rows = np.take_along_axis(cand[sl], order, 1)
                views = np.take_along_axis(view, order, 1)
                scale = q["fine"].shape[-1] / q["coarse"].shape[-1]  # coarse shifts in fine pixels, rounded once
                centres = np.rint(np.take_along_axis(shift, order[..., None], 1) * scale).astype(np.int64)
                D = np.empty((len(rows), kr))
                for t in range(0, len(rows), self.batch):
                    u = slice(t, t + self.batch)
                    D[u] = self._refine(q["fine"][sl][u], b["fine"], rows[u], views[u], sums=sums["fine"],
                                        centres=centres[u])
            return D, rows

        torch.set_num_threads(1)  # many small ops: one thread per op avoids oversubscription on shared cores
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
        """Shift half-width m, the comparison disk W (clear of wrapped and replicated borders) cropped to its bounding
        box [D, D], that box's first row r0, and the disk's area."""
        m, _ = self._shifts(size, size)
        return (m, *_disk_box(size, size / 2 - 2 * m))

    def _views(self, qb, angles, box: tuple[int, int] | None = None):
        """Every dihedral view of each query at every coarse angle: [b, 8 · len(angles), S, S] (view = d · n_a + a);
        with ``box`` = (r0, D), a box centred in the image, only its crop [b, 8 · len(angles), D, D] (the group maps
        it onto itself).

        Rotations commute with the group's rotations and turn into rotations by −a under its reflections, so each
        query is rotated once per angle and the 8 elements are flips and transposes of those (5 resamplings a query
        instead of 40; the same pixels up to float rounding of the mirrored sampling positions).
        """
        torch = _torch()
        b = len(qb)
        dih = {a: dihedral_views(_rotate(qb, a, box)) for a in sorted(set(angles) | {-a for a in angles})}
        out = []
        for d in range(8):
            sign = -1 if d in _REFLECTIONS else 1
            out.append(torch.stack([dih[sign * a][d] for a in angles], 1))  # [b, n_a, S, S]
        return torch.stack(out, 1).reshape(b, -1, *out[0].shape[-2:])

    def _base_sums(self, b: dict, cand: np.ndarray) -> dict:
        """Σ_W t(p − d) and Σ_W t(p − d)² of the base slices at every shift, per size: [N, 2, (2m + 1)²].

        They depend on the base slice alone, so they are computed once per slice a search may touch (the candidate
        rows), in fixed chunks before the query threads start, and kept in ``b`` for later searches.
        """
        torch = _torch()
        need = np.unique(cand[cand >= 0])
        out = {}
        for level in ("coarse", "fine"):
            B = b[level]
            m, Wc, r0, _ = self._window(B.shape[-1])
            cache = b.setdefault(f"_sums_{level}_m{m}", {})  # the disk and shifts follow from size and m
            if "sums" not in cache:
                cache["sums"] = torch.zeros(len(B), 2, (2 * m + 1) ** 2)
                cache["done"] = np.zeros(len(B), dtype=bool)
            todo = need[~cache["done"][need]]
            with torch.no_grad():
                for s in range(0, len(todo), 512):
                    rows = torch.from_numpy(todo[s : s + 512])
                    A, E = window_sums(shifted_input(B[rows], m, r0, Wc.shape[-1]), Wc)
                    cache["sums"][rows] = torch.stack([A, E], 1)
            cache["done"][todo] = True
            out[level] = cache["sums"]
        return out

    def _coarse_all(self, Q, B, cand, *, sums=None):
        """Best residual, view and integer shift of each (query, candidate) at the coarse size: [Q, kc], [Q, kc] and
        [Q, kc, 2] (view = d · n_a + a; shift (dy, dx) in coarse pixels)."""
        torch = _torch()
        score = np.empty(cand.shape)
        view = np.empty(cand.shape, dtype=np.int64)
        shift = np.empty((*cand.shape, 2), dtype=np.int64)
        for s in range(0, len(cand), self.batch):
            sl = slice(s, s + self.batch)
            surf = self._coarse_surfaces(Q[sl], B, cand[sl], sums=sums)  # [b, kc, nv, S, S]
            best, arg = _subpixel(surf).min(2)  # sub-pixel shifts matter here
            S = surf.shape[-1]
            at = surf.flatten(-2).gather(2, arg[..., None, None].expand(-1, -1, 1, S * S))[:, :, 0].argmin(-1)
            score[sl], view[sl] = best.numpy(), arg.numpy()
            shift[sl] = torch.stack([at // S, at % S], -1).numpy() - S // 2
        score[cand < 0] = np.inf
        return score, view, shift

    def _coarse_surfaces(self, qb, B, cand, *, sums=None):
        """Affine-map residual 1 − corr² of every view of each query against each candidate at every integer shift:
        [b, kc, n_views, 2m + 1, 2m + 1] (coarse size; shifts d = −m … m, row-major).

        The correlations Σ_W v(p) t(p − d) of the windowed views v with each candidate t at the (2m + 1)² shifts d are
        one grouped ``conv2d`` (kernels: the views cropped to W's bounding box; inputs: the candidates' circularly
        padded crops): at 32² with m = 2 that is 25 shifts, far fewer than the 32² an FFT computes.
        """
        torch = _torch()
        F = torch.nn.functional
        m, Wc, r0, n = self._window(qb.shape[-1])
        D, S = Wc.shape[-1], 2 * m + 1
        V = self._views(qb, self._angles(self.coarse_rot_step_deg), (r0, D)) * Wc
        b, nv = V.shape[:2]
        kc = cand.shape[1]
        s1 = V.sum((-1, -2))
        var_v = ((V * V).sum((-1, -2)) - s1 * s1 / n).clamp_min(1e-9)  # [b, nv]
        rows = torch.from_numpy(np.where(cand < 0, 0, cand))
        x = shifted_input(B[rows], m, r0, D)  # [b, kc, D+2m, D+2m]
        if sums is None:
            A, E = window_sums(x.reshape(b * kc, D + 2 * m, -1), Wc)
        else:
            A, E = sums[rows.reshape(-1)].unbind(1)
        A, E = A.reshape(b, kc, 1, S * S), E.reshape(b, kc, 1, S * S)
        C = F.conv2d(x.transpose(0, 1), V.reshape(b * nv, 1, D, D), groups=b)  # [kc, b·nv, S, S]
        C = C.flip(-1, -2).reshape(kc, b, nv, S * S).transpose(0, 1)  # [b, kc, nv, S²]
        var_t = (E - A * A / n).clamp_min(1e-9)
        corr = (C - s1[:, None, :, None] * A / n) / torch.sqrt(var_t * var_v[:, None, :, None])
        return (1 - corr.clamp_min(0) ** 2).reshape(b, kc, nv, S, S)

    def _refine(self, qb, B, rows, views, *, sums=None, centres=None):
        """Polynomial-intensity residual at the fine size for the given (query, candidate, coarse view): [b, kr].

        With ``centres`` [b, kr, 2] (the coarse shifts in fine pixels) and ``fine_window_px`` set, only the shifts
        within ``fine_window_px`` of the centre (kept inside the ±m domain) are evaluated; a pair whose best integer
        shift lands on the window's edge, with the domain going on beyond it, is evaluated over every shift."""
        torch = _torch()
        w = self.fine_window_px
        m = self._window(qb.shape[-1])[0]
        out = np.empty(rows.shape)
        # one basis per distinct (query, view): a query's candidates often share their best coarse view
        n_views = 8 * len(self._angles(self.coarse_rot_step_deg))
        key, inv = np.unique(np.arange(len(qb))[:, None] * n_views + views, return_inverse=True)
        powers, Ginv = self._fine_basis(qb[torch.from_numpy(key // n_views)], key % n_views)
        inv = torch.from_numpy(inv.reshape(views.shape))
        for j in range(rows.shape[1]):
            basis = powers[inv[:, j]], Ginv[inv[:, j]]
            if centres is None or w is None or w >= m:
                surf = self._fine_surfaces(None, B, rows[:, j], None, sums=sums, basis=basis)
                out[:, j] = _subpixel(surf).amin(1).numpy()
                continue
            c = torch.from_numpy(np.clip(centres[:, j], w - m, m - w))
            surf = self._fine_surfaces(None, B, rows[:, j], None, sums=sums, centre=c, basis=basis)
            r, a = _subpixel(surf).min(1)
            at = surf.flatten(-2)[torch.arange(len(a)), a].argmin(-1)
            pos = torch.stack([at // (2 * w + 1), at % (2 * w + 1)], -1)
            edge = (((pos == 0) & (c - w > -m)) | ((pos == 2 * w) & (c + w < m))).any(-1).numpy()
            out[:, j] = r.numpy()
            if edge.any():
                e = torch.from_numpy(edge)
                full = self._fine_surfaces(None, B, rows[edge, j], None, sums=sums, basis=(basis[0][e], basis[1][e]))
                out[edge, j] = _subpixel(full).amin(1).numpy()
        return out

    def _fine_basis(self, qb, views):
        """Each query's view at the coarse view's angle and ± ``rot_step_deg``, as the windowed powers v¹ … v^K
        [b, 3, K, D, D] a correlation reads, and the inverse Gram matrix of the basis 1, v, …, v^K over W
        [b, 3, K + 1, K + 1] (float64)."""
        torch = _torch()
        size = qb.shape[-1]
        _, Wc, r0, _ = self._window(size)
        D = Wc.shape[-1]
        c_angles = torch.tensor(self._angles(self.coarse_rot_step_deg), dtype=torch.float32)
        b, K1 = len(qb), self.degree + 1
        offs = (-self.rot_step_deg, 0.0, self.rot_step_deg)
        vi = torch.from_numpy(np.asarray(views, dtype=np.int64))
        base = dihedral_each(qb, vi // len(c_angles))  # each query's coarse element
        ang = torch.cat([(c_angles[vi % len(c_angles)] + o).clamp(-self.max_rotation_deg, self.max_rotation_deg)
                         for o in offs])
        V = _rotate_each(base.repeat(len(offs), 1, 1), ang, box=(r0, D)).reshape(len(offs), b, D, D).transpose(0, 1)
        return torch.stack([V**k for k in range(1, K1)], 2) * Wc, gram_inverse(V, Wc, K1)

    def _fine_surfaces(self, qb, B, rows, views, *, sums=None, centre=None, basis=None):
        """Residual share ρ of each query against one candidate each (base ``rows`` [b], coarse ``views`` [b]) at every
        integer shift, for the coarse angle and ± ``rot_step_deg``: [b, 3, 2m + 1, 2m + 1] (fine size); with
        ``centre`` [b, 2] only at the shifts within ``fine_window_px`` of it: [b, 3, 2w + 1, 2w + 1]. ``basis``: the
        queries' :meth:`_fine_basis`, when already computed.

        For each shift d the least-squares fit of t(· − d) by the K + 1 powers of each view needs the correlations
        b_k(d) = Σ_W v^k(p) t(p − d): one grouped ``conv2d``, as in the coarse pass (at 64² with m = 4: 81 shifts;
        measured 2.5× faster than the FFT correlations it replaced, same residuals to 1e-5).
        """
        torch = _torch()
        F = torch.nn.functional
        m, Wc, r0, n = self._window(B.shape[-1])
        D = Wc.shape[-1]
        powers, Ginv = basis if basis is not None else self._fine_basis(qb, views)
        b, n_off, K = powers.shape[:3]
        rows = torch.from_numpy(np.where(np.asarray(rows) < 0, 0, rows))
        x = shifted_input(B[rows], m, r0, D)
        # b_0 = Σ_W t(p − d) (the basis' constant term) and Σ_W t(p − d)²
        A, E = window_sums(x, Wc) if sums is None else sums[rows].unbind(1)
        S = 2 * m + 1
        if centre is not None:  # only the shifts d = centre − w … centre + w
            S = 2 * self.fine_window_px + 1
            x, A, E = shift_window(x, A, E, centre, m, self.fine_window_px)
        # b_k for k ≥ 1: float32 correlations (residual shares of 1e-3 are far above their rounding), float64 fit
        bk = F.conv2d(x[None], powers.reshape(-1, 1, D, D), groups=b).flip(-1, -2).reshape(b, n_off, K, -1)
        bk = torch.cat([A[:, None, None].expand(-1, n_off, 1, -1), bk], 2).double()  # [b, 3, K+1, S²]
        E = E.double()
        fit = torch.einsum("bvkd,bvkl,bvld->bvd", bk, Ginv, bk)
        var_t = (E[:, None] - bk[:, :, 0] ** 2 / n).clamp_min(1e-12)
        return ((E[:, None] - fit) / var_t).clamp(0, 1).reshape(b, n_off, S, S)
