"""SimA (Rao, Qu, Moyer, arXiv 2509.25003): the norm of the denoiser's output.

The expected noise prediction at a point points towards a kernel-weighted local mean of nearby training
samples, so its norm is small near a training sample. ``sima``: one query, ε_θ(x₀, t) at a small t on the
clean slice, score −‖ε̂‖₂. ``sima_mc`` (Monte-Carlo, best at low FPR in the paper): the expectation is
estimated over K noised copies x_t = a_t·x₀ + s_t·ε_k, score −‖(1/K)·Σ_k ε_θ(x_t^k, t)‖₂ (K queries).
"""

from __future__ import annotations

import numpy as np

from .base import Attack, arrays, fixed_noise, norm, timestep


class SimA(Attack):
    name = "sima"
    needs = ("noise_prediction",)
    threat_model = "white-box (noise predictor; 1 query)"
    defaults = {"t_frac": 0.05}

    def queries_per_slice(self) -> int:
        return 1

    def score(self, generator, dataset, seed: int, *, reference=None) -> np.ndarray:
        x0, m = arrays(dataset)
        return -norm(generator.predict_noise(x0, m, t=timestep(generator, self.params["t_frac"])))


class SimAMC(Attack):
    name = "sima_mc"
    needs = ("noise_prediction",)
    threat_model = "white-box (noise predictor; K queries, Monte-Carlo)"
    defaults = {"t_frac": 0.05, "draws": 8}

    def queries_per_slice(self) -> int:
        return int(self.params["draws"])

    def score(self, generator, dataset, seed: int, *, reference=None) -> np.ndarray:
        x0, m = arrays(dataset)
        t = timestep(generator, self.params["t_frac"])
        a, s = generator.noise_schedule(t)
        acc = np.zeros(x0.shape)
        for k in range(int(self.params["draws"])):
            xt = (a * x0 + s * fixed_noise(x0.shape, seed=seed, draw=k)).astype(np.float32)
            acc += generator.predict_noise(xt, m, t=t)
        return -norm(acc / int(self.params["draws"]))
