"""White-box hooks shared by generators whose loss is the mean squared error of a (prediction, target) pair.

A generator mixes in :class:`PairLoss` and implements ``_pair_batches(images, masks, *, t, seed, reduction)``,
returning one entry per batch: per-slice MSE arrays [n] for ``reduction="none"``, (prediction, target)
arrays [n, 1, H, W] for ``reduction="pair"``, both with the same fixed noise from ``seed``. It then has
``loss`` (white-box loss attack) and ``prediction_pair`` (legacy FCRE attack), and ``loss_is_pair_mse``
tells the audit it may compute both attacks from one network pass per timestep.

Both hooks evaluate the network in the precision it was trained in (``hook_precision``;
:func:`cmraudit.device.trained_precision_autocast`): a model fitted under bfloat16 autocast on a CPU that runs
bfloat16 natively is scored under the same autocast — the losses its training minimised, at about half the float32
cost; ``CMRAUDIT_CPU_PRECISION=fp32`` scores every model in float32.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from .diffusion import stack_pairs


class PairLoss:
    loss_is_pair_mse: ClassVar[bool] = True

    @property
    def hook_precision(self) -> str:
        """``bf16-autocast`` or ``fp32``: the arithmetic of :meth:`loss` and :meth:`prediction_pair` here."""
        return self._hook_autocast()[1]

    def _hook_autocast(self):
        from ..device import trained_precision_autocast

        return trained_precision_autocast((getattr(self, "training_", None) or {}).get("precision"))

    @torch.no_grad()
    def loss(self, images: np.ndarray, masks: np.ndarray, *, t: int | np.ndarray, seed: int = 0) -> np.ndarray:
        """Per-slice MSE of the network's prediction at noise level(s) ``t`` (0 = clean, fixed noise from ``seed``).

        For white-box membership inference: lower loss ⇒ the model fits the slice better.
        ``images`` float [N, H, W] in [-1, 1]; ``masks`` uint8 [N, H, W]; returns float64 [N].
        """
        with self._hook_autocast()[0]:
            out = self._pair_batches(images, masks, t=t, seed=seed, reduction="none")
        return np.concatenate(out) if out else np.zeros(0)

    @torch.no_grad()
    def prediction_pair(
        self, images: np.ndarray, masks: np.ndarray, *, t: int, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(prediction, target) maps [N, H, W] at noise level ``t``, with the same fixed noise as :meth:`loss`.

        The hook of the legacy FCRE white-box attack (band-pass error and SSIM features).
        """
        with self._hook_autocast()[0]:
            pairs = self._pair_batches(images, masks, t=t, seed=seed, reduction="pair")
        return stack_pairs(pairs, np.shape(images))

    def _pair_batches(self, images, masks, *, t, seed: int, reduction: str) -> list:
        raise NotImplementedError
