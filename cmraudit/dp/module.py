"""Network-side helpers for DP-SGD: Opacus compatibility fixes, batch-mean loss, noise multiplicity."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import UsageError


def fix_module(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """Make ``module`` Opacus-compatible; returns (module, changes).

    When Opacus's ``ModuleValidator`` finds no problem the *same* module is returned and ``changes`` is
    empty. Otherwise ``ModuleValidator.fix`` returns a fixed **copy** (e.g. BatchNorm → GroupNorm,
    which normalises within a sample, so no statistic mixes patients) and ``changes`` lists
    "name: Old → New" for every replaced sub-module. Build the optimiser on the returned module.
    """
    from opacus.validators import ModuleValidator

    leaky = _data_updated_buffers(module)
    if leaky:
        raise UsageError(
            f"the network updates {', '.join(leaky)} from batch data outside the gradient (e.g. MONAI VQVAE's "
            "EMAQuantizer codebook), which bypasses DP-SGD's clipping and noise; under --dp-epsilon use a "
            "gradient-trained codebook or an AutoencoderKL"
        )
    if not ModuleValidator.validate(module, strict=False):
        return module, []
    before = {n: type(m).__name__ for n, m in module.named_modules()}
    fixed = ModuleValidator.fix(module)
    after = {n: type(m).__name__ for n, m in fixed.named_modules()}
    changes = [f"{n}: {before[n]} → {after.get(n, 'removed')}" for n in before if before[n] != after.get(n, "removed")]
    remaining = ModuleValidator.validate(fixed, strict=False)
    if remaining:
        raise UsageError(
            f"the network cannot be trained with DP-SGD: Opacus reports {'; '.join(map(str, remaining))}; "
            "use a network without these layers (e.g. no BatchNorm, no attention variant Opacus cannot hook)"
        )
    return fixed, changes


def _data_updated_buffers(module: nn.Module) -> list[str]:
    """Sub-modules that change state from batch data without gradients (not covered by DP-SGD).

    Opacus's validator does not see these: e.g. MONAI ``EMAQuantizer`` (VQ-VAE codebook as an EMA of the
    batch encodings, buffers ``ema_cluster_size``/``ema_w``). BatchNorm running statistics are handled by
    ``ModuleValidator.fix`` (replaced by GroupNorm), so they are not listed here.
    """
    out = []
    for name, sub in module.named_modules():
        own = [b for b, _ in sub.named_buffers(recurse=False)]
        if type(sub).__name__ == "EMAQuantizer" or any(b.startswith("ema_") for b in own):
            out.append(f"{name or type(sub).__name__} ({type(sub).__name__})")
    return out


def dp_mean(per_example_loss: torch.Tensor) -> torch.Tensor:
    """Batch mean that is 0 (not NaN) on an empty Poisson batch; use it as the loss to backprop."""
    return per_example_loss.sum() / max(int(per_example_loss.shape[0]), 1)


def multiplicity_loss(loss_fn: Callable[[Any], torch.Tensor], x: Any, *, k: int) -> torch.Tensor:
    """Per-example loss averaged over ``k`` independent calls of ``loss_fn(x)`` (DPDM noise multiplicity).

    ``loss_fn`` must draw fresh timesteps/noise on each call and return a per-example loss [B] or its
    batch mean (averaging is linear, so both give the batch mean of the k-averaged per-example loss).
    Each call is a separate forward pass of the (Opacus-wrapped) network, so Opacus's hooks sum the
    per-sample gradients of the ``k`` terms into one per-example gradient — the gradient of the averaged
    loss — *before* clipping. The sensitivity (one clipped gradient per patient) is unchanged, the
    variance of the diffusion loss estimate drops ~1/k, at k× the compute of a step.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"noise multiplicity k={k!r} must be an integer ≥ 1")
    total = loss_fn(x)
    for _ in range(int(k) - 1):
        total = total + loss_fn(x)
    return total / int(k)
