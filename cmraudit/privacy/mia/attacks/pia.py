"""PIA and PIAN (Kong et al., ICLR 2024): proximal initialisation.

The model's own noise estimate at t = 0, ε̂₀ = ε_θ(x₀, 0), is used as the noise: x_t = a_t·x₀ + s_t·ε̂₀ is
built deterministically and the score is −‖ε_θ(x_t, t) − ε̂₀‖₄ (members: the model is consistent along its
own trajectory, so the error is smaller). PIAN first normalises ε̂₀ to zero mean and unit variance per slice.
Two queries per slice; t = 0.2·T by default (t = 200 of 1000 in the paper).
"""

from __future__ import annotations

import numpy as np

from .base import Attack, arrays, norm, timestep


class PIA(Attack):
    name = "pia"
    needs = ("noise_prediction",)
    threat_model = "white-box (noise predictor; 2 queries)"
    defaults = {"t_frac": 0.2, "p": 4.0}
    normalised = False

    def queries_per_slice(self) -> int:
        return 2

    def score(self, generator, dataset, seed: int, *, reference=None) -> np.ndarray:
        x0, m = arrays(dataset)
        eps0 = generator.predict_noise(x0, m, t=0)
        if self.normalised:
            mu = eps0.mean(axis=(1, 2), keepdims=True)
            sd = eps0.std(axis=(1, 2), keepdims=True)
            eps0 = (eps0 - mu) / np.where(sd > 0, sd, 1.0)
        t = timestep(generator, self.params["t_frac"])
        a, s = generator.noise_schedule(t)
        xt = (a * x0 + s * eps0).astype(np.float32)
        return -norm(generator.predict_noise(xt, m, t=t) - eps0, float(self.params["p"]))


class PIAN(PIA):
    name = "pian"
    threat_model = "white-box (noise predictor; 2 queries; ε̂₀ normalised to N(0, 1))"
    normalised = True
