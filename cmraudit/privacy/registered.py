"""Registered pixel distance: copy search invariant to the training augmentations.

For a query slice q and a training slice t, the registered distance is

    d_reg(q, t) = min over g in G of ‖g(q) − t‖₂   (pixels at ``size``², [-1, 1] scale)

with G = {4 flips} × {rotations −max_rot…+max_rot in ``rot_step`` steps} × {integer shifts
within ±max_shift_px (native pixels)}. Shifts are searched exhaustively with FFT
cross-correlation (circular: wrapped borders add a small residual), rotations and flips by
resampling the query (bilinear). Exhaustive over all training slices would cost |G|·N·M, so
the candidates are the ``k_candidates`` nearest training slices in the (augmentation-
invariant) domain embedding, re-ranked by d_reg — an invariant pre-filter with exact
re-ranking over the transform grid. A copy whose source is not among the candidates is
missed (measured on the 32² phantom: the source of a shifted copy ranked up to 18th in the domain
space, hence the default of 20 candidates).
"""
from __future__ import annotations

import math

import numpy as np

from ..features.neighbours import knn
from ..features.pixel import resize_images


def _views(q, *, angles, flips: bool):
    import torch
    import torch.nn.functional as F

    outs = []
    fl = [q, q.flip(-1), q.flip(-2), q.flip(-1, -2)] if flips else [q]
    for x in fl:
        for a in angles:
            if a == 0:
                outs.append(x)
                continue
            r = math.radians(a)
            theta = torch.tensor([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0]], dtype=x.dtype)
            theta = theta[None].expand(len(x), 2, 3)
            grid = F.affine_grid(theta, [len(x), 1, *x.shape[-2:]], align_corners=False)
            outs.append(F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0])
    return torch.stack(outs, 1)  # [b, V, S, S]


class RegisteredSearcher:
    """Registered nearest-neighbour search of query images among base images (see module docstring)."""

    def __init__(self, *, size: int = 32, max_rotation_deg: float = 20.0, rot_step_deg: float = 5.0, max_shift_px: float = 4.0,
                 flips: bool = True, k_candidates: int = 20, batch: int = 64):
        self.size = size
        self.max_rotation_deg = max_rotation_deg
        self.rot_step_deg = rot_step_deg
        self.max_shift_px = max_shift_px
        self.flips = flips
        self.k_candidates = k_candidates
        self.batch = batch

    def get_params(self) -> dict:
        # hyper-parameters only: private caches (e.g. rotation grids as tensors) are not parameters
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def search(self, q_images, q_emb, b_images, b_emb, *, k: int):
        """k nearest base rows by registered distance → (distances [Nq, k] ascending, indices [Nq, k])."""
        import torch

        native = q_images.shape[-1]
        size = min(self.size or native, native)
        kc = min(max(self.k_candidates, k), len(b_images))
        cand = knn(q_emb, b_emb, k=kc).indices  # [Nq, kc]
        Q = torch.from_numpy(resize_images(np.asarray(q_images), size))
        B = torch.from_numpy(resize_images(np.asarray(b_images), size))
        m = int(math.ceil(self.max_shift_px * size / native))
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        c = (size - 1) / 2
        W = (((yy - c) ** 2 + (xx - c) ** 2) <= (size / 2 - m) ** 2).to(Q.dtype)  # disk: wrapped borders never enter
        self._W = W
        self._WF = torch.fft.rfft2(W)
        BF = torch.fft.rfft2(B)
        Bn = torch.fft.rfft2(B * B)  # for the windowed energy of the shifted base
        sh = torch.tensor([(d % size) for d in range(-m, m + 1)])
        n_ang = int(round(self.max_rotation_deg / self.rot_step_deg)) if self.rot_step_deg > 0 else 0
        angles = [i * self.rot_step_deg for i in range(-n_ang, n_ang + 1)]
        D = np.empty((len(Q), kc))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small FFTs: one thread avoids oversubscription on shared cores
        try:
            self._loop(Q, BF, Bn, cand, sh, angles, size, kc, D)
        finally:
            torch.set_num_threads(threads)
        order = np.argsort(D, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(D, order, 1), np.take_along_axis(cand, order, 1)

    def _loop(self, Q, BF, Bn, cand, sh, angles, size, kc, D):
        import torch

        with torch.no_grad():
            for s in range(0, len(Q), self.batch):
                qb = Q[s : s + self.batch]
                cb = torch.from_numpy(cand[s : s + self.batch])
                V = _views(qb, angles=angles, flips=self.flips) * self._W  # [b, V, S, S], windowed
                VF = torch.fft.rfft2(V)
                Vn = (V.double() ** 2).sum((2, 3))  # [b, V]
                best = torch.full((len(qb), kc), float("inf"), dtype=torch.float64)
                for j in range(kc):
                    tf = BF[cb[:, j]]  # [b, S, S/2+1]
                    # Σ_W (v − t_d)² = Σ W v² + Σ W t_d² − 2 Σ (W v) t_d, all shifts d at once by FFT
                    cross = torch.fft.irfft2(VF * tf.conj()[:, None], s=(size, size))[:, :, sh][:, :, :, sh]  # [b, V, s, s]
                    energy = torch.fft.irfft2(self._WF[None] * Bn[cb[:, j]].conj(), s=(size, size))[:, sh][:, :, sh]  # [b, s, s]
                    d2 = Vn[:, :, None, None] + energy[:, None].double() - 2 * cross.double()
                    best[:, j] = d2.flatten(1).amin(1)
                D[s : s + self.batch] = best.clamp_min(0).sqrt().numpy()
