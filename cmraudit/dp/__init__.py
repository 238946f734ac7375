"""Patient-level DP-SGD machinery (docs/dp.md, docs/design.md § 3): a low layer that generators and the privacy
audit both use, and that imports neither of them.

- :mod:`.config`: :class:`DPConfig` (the ``--dp-*`` options) and :func:`require_dp_support` (no torch).
- :mod:`.accounting`, :mod:`.budget`: ε of a noise schedule (Opacus accountants), per-stage budgets and their
  composition into report.json's ``generator.dp`` block (no torch).
- :mod:`.private`, :mod:`.sampler`, :mod:`.module`: Opacus wrapping, Poisson sampling of *patients*, per-example
  losses (torch; imported on first use of ``make_private``, ``PrivateTraining``, ``PatientPoissonSampler``,
  ``dp_mean``, ``fix_module`` or ``multiplicity_loss`` from this package, so ``import cmraudit.dp`` stays light).
"""
from __future__ import annotations

import importlib

from .accounting import (
    ACCOUNTANTS,
    GUARANTEE_TEXT,
    StageBudget,
    compose_budget,
    compute_epsilon,
    noise_multiplier_for,
    split_budget,
)
from .budget import calibrate_noise, parse_split, stage_weights
from .config import DPConfig, require_dp_support

#: torch-backed names, resolved lazily (PEP 562) from the module that defines them
_TORCH_NAMES = {
    "make_private": "private", "PrivateTraining": "private", "PatientPoissonSampler": "sampler",
    "empty_safe_collate": "sampler", "dp_mean": "module", "fix_module": "module", "multiplicity_loss": "module",
}


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_TORCH_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCOUNTANTS", "GUARANTEE_TEXT", "DPConfig", "PatientPoissonSampler", "PrivateTraining", "StageBudget",
    "calibrate_noise", "compose_budget", "compute_epsilon", "dp_mean", "empty_safe_collate", "fix_module",
    "make_private", "multiplicity_loss", "noise_multiplier_for", "parse_split", "require_dp_support",
    "split_budget", "stage_weights",
]
