"""Conditional gap (after CLiD, Zhai et al., NeurIPS 2024): conditional overfitting.

Members show a larger gap between the denoising error with their true condition and with a null one. For a
mask-conditioned generator the condition is the mask: at each t of a small grid, with the same fixed noise,
gap = ‖ε_θ(x_t, blank) − ε‖² − ‖ε_θ(x_t, mask) − ε‖², averaged over t; the score is the gap. The null
condition is the blank mask (all background, default) or the masks shuffled among the candidates (seeded).
2 queries per slice and timestep.
"""

from __future__ import annotations

import numpy as np

from ....errors import UsageError
from .base import Attack, arrays, fixed_noise, norm, timestep


class ConditionalGap(Attack):
    name = "conditional_gap"
    needs = ("noise_prediction",)
    threat_model = "white-box (noise predictor with a chosen condition; 2 queries per t)"
    defaults = {"t_fracs": (0.1, 0.3), "null": "blank"}

    def queries_per_slice(self) -> int:
        return 2 * len(self.params["t_fracs"])

    def score(self, generator, dataset, seed: int, *, reference=None) -> np.ndarray:
        x0, m = arrays(dataset)
        if self.params["null"] == "blank":
            null = np.zeros_like(m)
        elif self.params["null"] == "shuffled":
            null = m[np.random.default_rng([int(seed), 0xC11D]).permutation(len(m))]
        else:
            raise UsageError(f"attack conditional_gap: null must be 'blank' or 'shuffled', got {self.params['null']!r}")
        gap = np.zeros(len(x0))
        for j, frac in enumerate(self.params["t_fracs"]):
            t = timestep(generator, frac)
            a, s = generator.noise_schedule(t)
            eps = fixed_noise(x0.shape, seed=seed, draw=j)
            xt = (a * x0 + s * eps).astype(np.float32)
            gap += (
                norm(generator.predict_noise(xt, null, t=t) - eps) ** 2
                - norm(generator.predict_noise(xt, m, t=t) - eps) ** 2
            )
        return gap / len(self.params["t_fracs"])
