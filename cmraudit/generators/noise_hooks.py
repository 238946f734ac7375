"""The ``noise_prediction`` white-box hook: the denoiser as a noise predictor on a shared forward process.

Diffusion-structure membership attacks (PIA, SecMI, SimA, conditional gap; ``cmraudit.privacy.mia.attacks``)
need more than a loss: they query the network at inputs they build themselves. A generator offers that by
mixing in :class:`NoisePrediction` and listing ``"noise_prediction"`` in ``GeneratorTags.hooks``. Two
methods, on the diffusion noise-level grid shared by every generator (integer t, 0 = clean …
``num_train_timesteps`` − 1 = pure noise):

- ``noise_schedule(t) -> (a_t, s_t)``: the forward process is x_t = a_t·x_0 + s_t·ε (DDPM: a = √ᾱ_t,
  s = √(1 − ᾱ_t); flow matching on the linear path with flow time u = 1 − t/T: a = u, s = 1 − u);
- ``predict_noise(x_t, masks, *, t) -> ε̂``: the network's estimate of ε for noisy images x_t [N, H, W]
  conditioned on ``masks`` [N, H, W] (labels 0..3; an all-zero mask is the "blank" condition). An
  ε-prediction model returns its output; a velocity model v̂ ≈ x_0 − ε returns x_t − u·v̂.

A plugin implements ``_noise_schedule(t: int)`` and ``_predict_noise_batch(x_t, masks_oh, t) -> ε̂``
(torch tensors [n, 1, H, W], one timestep per batch); batching, checks, numpy conversion, the device and the
modules' train/eval mode live here (``_predict_noise_batch`` must not move its modules or change their mode).

The ``parameter_gradients`` hook (gradient-based attacks, after GSA, Pang et al. 2023) adds one method:

- ``noise_loss_gradient_norm(x_t, masks, eps, *, t) -> [N]``: for each slice, the L2 norm of the gradient of
  its own noise-prediction loss mean((ε̂ − ε)²) with respect to the image network's trainable parameters.
  Per-sample gradients come from Opacus's ``GradSampleModule`` (one batched backward pass, the same machinery
  as DP-SGD), so a plugin whose network trains under DP-SGD offers this hook for free by listing it in
  ``GeneratorTags.hooks``; the network must be the module stored at ``image_modules_["image"]``.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import torch

from ..device import select_device
from ..errors import UsageError
from .base import check_is_fitted
from .diffusion import onehot


class NoisePrediction:
    offers_noise_prediction: ClassVar[bool] = True

    def noise_schedule(self, t: int) -> tuple[float, float]:
        """(a_t, s_t) with x_t = a_t·x_0 + s_t·ε at integer noise level ``t``."""
        return self._noise_schedule(self._check_t(t))

    @torch.no_grad()
    def predict_noise(self, x_t: np.ndarray, masks: np.ndarray, *, t: int) -> np.ndarray:
        """ε̂ [N, H, W] (float64) for noisy images ``x_t`` at noise level ``t``, conditioned on ``masks``."""
        check_is_fitted(self, ("mask_model_", "image_modules_"))
        x_t, masks = np.asarray(x_t, dtype=np.float32), np.asarray(masks)
        if x_t.shape != masks.shape or x_t.ndim != 3:
            raise UsageError(f"predict_noise: x_t and masks must both be [N, H, W], got {x_t.shape} and {masks.shape}")
        t = self._check_t(t)

        device = select_device(self.device)
        for mod in self.image_modules_.values():
            mod.to(device).eval()
        out = []
        bs = int(self.sample_batch_size)
        for s in range(0, len(x_t), bs):
            x = torch.tensor(x_t[s : s + bs])[:, None].to(device)  # a copy: memory-mapped input is read-only
            moh = onehot(masks[s : s + bs]).to(device)
            out.append(self._predict_noise_batch(x, moh, t)[:, 0].double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, *x_t.shape[1:]))

    def noise_loss_gradient_norm(self, x_t: np.ndarray, masks: np.ndarray, eps: np.ndarray, *, t: int) -> np.ndarray:
        """Per-slice ‖∇_θ mean((ε̂(x_t) − ε)²)‖₂ over the image network's trainable parameters (float64 [N])."""
        check_is_fitted(self, ("mask_model_", "image_modules_"))
        x_t, masks, eps = np.asarray(x_t, dtype=np.float32), np.asarray(masks), np.asarray(eps, dtype=np.float32)
        if not (x_t.shape == masks.shape == eps.shape and x_t.ndim == 3):
            raise UsageError(
                f"noise_loss_gradient_norm: x_t, masks and eps must all be [N, H, W], got "
                f"{x_t.shape}, {masks.shape} and {eps.shape}"
            )
        t = self._check_t(t)
        from opacus import GradSampleModule

        from ..device import select_device

        device = select_device(self.device)
        net = self.image_modules_["image"].to(device)
        params = [p for p in net.parameters() if p.requires_grad]
        gsm = GradSampleModule(net, batch_first=True, loss_reduction="sum")
        # Opacus records activations only in training mode; dropout stays off (as in eval) so outputs match
        net.train()
        for mod in net.modules():
            if isinstance(mod, torch.nn.modules.dropout._DropoutNd):
                mod.eval()
        out = []
        try:
            bs = int(self.sample_batch_size)
            for s in range(0, len(x_t), bs):
                x = torch.tensor(x_t[s : s + bs])[:, None].to(device)
                e = torch.tensor(eps[s : s + bs])[:, None].to(device)
                moh = onehot(masks[s : s + bs]).to(device)
                for p in params:
                    p.grad_sample = None
                with torch.enable_grad(), warnings.catch_warnings():
                    # Opacus's full backward hooks fire on module outputs only (inputs need no gradient): expected
                    warnings.filterwarnings("ignore", message="Full backward hook is firing")
                    pred = self._predict_noise_batch(x, moh, t).float()
                    per_slice = ((pred - e) ** 2).flatten(1).mean(1)
                    per_slice.sum().backward()
                sq = torch.zeros(len(x), dtype=torch.float64, device=device)
                for p in params:
                    gs = getattr(p, "grad_sample", None)
                    if gs is not None:
                        sq += gs.reshape(len(x), -1).double().pow(2).sum(1)
                out.append(sq.sqrt().cpu().numpy())
        finally:
            gsm.remove_hooks()
            net.eval()
            for p in params:
                p.grad_sample = None
                p.grad = None
        return np.concatenate(out) if out else np.zeros(0)

    def _check_t(self, t) -> int:
        T = int(self.num_train_timesteps)
        if not (np.ndim(t) == 0 and 0 <= int(t) < T):
            raise UsageError(
                f"noise_prediction: t must be one integer in 0..{T - 1} (noise level; 0 = clean), got {t!r}"
            )
        return int(t)

    def _class_labels(self, n: int, device) -> torch.Tensor | None:
        """Vendor-conditioned models are queried unconditionally on the vendor (label 0), as in ``loss``."""
        return torch.zeros(n, dtype=torch.long, device=device) if getattr(self, "vendor_conditioning", False) else None

    def _noise_schedule(self, t: int) -> tuple[float, float]:
        raise NotImplementedError

    def _predict_noise_batch(self, x_t: torch.Tensor, masks_oh: torch.Tensor, t: int) -> torch.Tensor:
        raise NotImplementedError
