"""SecMI (Duan et al., ICML 2023), the statistical variant SecMI_stat.

Deterministic DDIM inversion of x₀ to t_sec (default 0.1·T in steps of Δ = 0.01·T: t = 100, interval 10 of
1000), one more inversion step to t_sec + Δ, one deterministic denoising step back to t_sec, and the
posterior-estimation error ‖x̂_{t_sec} − x_{t_sec}‖² as the score (negated: members have a smaller error).
t_sec/Δ + 2 queries per slice (12 by default). SecMI_NN (a classifier on the error maps) needs labels and is
not offered.
"""

from __future__ import annotations

import numpy as np

from .base import Attack, arrays, ddim_step, norm, timestep


class SecMI(Attack):
    name = "secmi"
    needs = ("noise_prediction",)
    threat_model = "white-box (noise predictor; DDIM inversion, t_sec/Δ + 2 queries)"
    defaults = {"t_frac": 0.1, "interval_frac": 0.01}

    def _grid(self, generator) -> list[int]:
        t_sec = max(1, timestep(generator, self.params["t_frac"]))
        d = max(1, timestep(generator, self.params["interval_frac"]))
        return list(range(0, t_sec, d)) + [t_sec]

    def queries_per_slice(self) -> int:
        n = int(round(float(self.params["t_frac"]) / float(self.params["interval_frac"])))
        return n + 2

    def score(self, generator, dataset, seed: int, *, reference=None) -> np.ndarray:
        x, m = arrays(dataset)
        grid = self._grid(generator)
        x = x.astype(np.float64)
        for t_from, t_to in zip(grid[:-1], grid[1:]):  # invert x0 -> x_{t_sec}
            x = ddim_step(generator, x, generator.predict_noise(x.astype(np.float32), m, t=t_from), t_from, t_to)
        t_sec = grid[-1]
        d = max(1, grid[1] - grid[0]) if len(grid) > 1 else 1
        t_up = min(int(getattr(generator, "num_train_timesteps", 1000)) - 1, t_sec + d)
        x_up = ddim_step(generator, x, generator.predict_noise(x.astype(np.float32), m, t=t_sec), t_sec, t_up)
        x_back = ddim_step(generator, x_up, generator.predict_noise(x_up.astype(np.float32), m, t=t_up), t_up, t_sec)
        return -(norm(x_back - x) ** 2)
