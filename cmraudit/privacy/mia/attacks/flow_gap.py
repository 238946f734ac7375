"""Flow gap (flow matching / rectified flow): the reconstruction error at the most revealing interpolation time.

The train–test gap of the flow-matching reconstruction error (velocity MSE with fixed noise) is bell-shaped
over the interpolation time with a predictable peak. The time is chosen without any member label: over a grid
of noise levels t (flow time u = 1 − t/T), the error of the *candidates* (unlabelled) is compared with the
error of *reference* patients known to be non-members (holdout patients that are not candidates); the chosen t
maximises (mean_ref − mean_candidates) / sd_ref — where the candidate pool, which holds the members, is fitted
best relative to unseen data. Score at that t: −error. Grid of 9 levels: 9 queries per slice.
"""

from __future__ import annotations

import numpy as np

from ....errors import UsageError
from .base import Attack, arrays, timestep


class FlowGap(Attack):
    name = "flow_gap"
    needs = ("velocity_loss",)
    threat_model = "white-box (flow-matching loss over interpolation time; reference non-members pick the time)"
    needs_reference = True
    defaults = {"t_fracs": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)}

    def queries_per_slice(self) -> int:
        return len(self.params["t_fracs"])

    def score(self, generator, dataset, seed: int, *, reference=None) -> np.ndarray:
        if reference is None or len(reference) < 2:
            raise UsageError(
                "attack flow_gap needs reference non-member slices (holdout patients not among the candidates)"
            )
        x, m = arrays(dataset)
        xr, mr = arrays(reference)
        best, scores, chosen = -np.inf, None, None
        for frac in self.params["t_fracs"]:
            t = timestep(generator, frac)
            e = np.asarray(generator.loss(x, m, t=t, seed=seed + t), dtype=np.float64)
            er = np.asarray(generator.loss(xr, mr, t=t, seed=seed + 7919 + t), dtype=np.float64)
            sep = (er.mean() - e.mean()) / max(er.std(), 1e-12)
            if sep > best:
                best, scores, chosen = sep, -e, t
        self.chosen_t_ = chosen
        return scores

    def info(self) -> dict:
        return super().info() | {"chosen_t": getattr(self, "chosen_t_", None)}
