"""Gradient norm (after GSA, Pang et al. 2023, "White-box membership inference attacks against diffusion
models"): a training sample sits near a minimum of its own loss, so the per-sample gradient of the
denoising loss with respect to the weights is small for members.

At each noise level of a small grid, with fixed noise ε (the same for every slice at that level), x_t =
a_t·x₀ + s_t·ε is built and the per-slice gradient norm g_t = ‖∇_θ mean((ε_θ(x_t, t) − ε)²)‖₂ over the image
network's parameters is measured (Opacus per-sample gradients, one batched backward pass per level). Each
level's log g_t is standardised over the candidates (no labels) and the score is −mean over levels, as the
loss attack does with losses. GSA fits a classifier on gradient features of shadow models; this is its
label-free statistic, so it needs no shadow training and no member labels. One forward and one backward pass
per slice and level (5 by default). Small noise levels carry most of the signal (docs/privacy.md).
"""

from __future__ import annotations

import numpy as np

from ..whitebox import loss_scores
from .base import Attack, arrays, fixed_noise, timestep


class GradNorm(Attack):
    name = "grad_norm"
    needs = ("noise_prediction", "parameter_gradients")
    threat_model = "white-box (weights and gradients; 1 forward + 1 backward pass per noise level)"
    defaults = {"t_fracs": (0.025, 0.05, 0.1, 0.15, 0.3)}

    def queries_per_slice(self) -> int:
        return len(self.params["t_fracs"])

    def score(self, generator, dataset, seed: int, *, reference=None) -> np.ndarray:
        x0, m = arrays(dataset)
        logs = np.zeros((len(x0), len(self.params["t_fracs"])))
        for j, frac in enumerate(self.params["t_fracs"]):
            t = timestep(generator, frac)
            a, s = generator.noise_schedule(t)
            eps = fixed_noise(x0.shape, seed=seed, draw=j)
            xt = (a * x0 + s * eps).astype(np.float32)
            logs[:, j] = np.log(np.maximum(generator.noise_loss_gradient_norm(xt, m, eps, t=t), 1e-300))
        return loss_scores(logs)  # per-level standardisation over the candidates, as the loss attack does
