"""White-box attacks on diffusion structure: a small class per attack, registered by name
(:data:`cmraudit.privacy.mia.interface.ATTACKS`; the general interface is :mod:`cmraudit.privacy.mia.interface`).

An attack declares the white-box ``needs`` (hook names a generator lists in ``GeneratorTags.hooks``; see
``cmraudit.generators.noise_hooks``) and turns a fitted generator and a candidate dataset into one score per
slice (higher = more likely a member). It never sees membership labels; :func:`evaluate_attack` scores it at
the slice and patient level. An attack that needs known non-members (``needs_reference``) gets a separate
``reference`` dataset of holdout patients that are *not* among the candidates.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .. import interface
from .run import run_attacks


class Attack(interface.Attack):
    """Base class. Subclasses set the class attributes and implement :meth:`score` on a candidate dataset."""

    threat_model: ClassVar[str] = "white-box (model weights)"
    needs_reference: ClassVar[bool] = False

    def queries_per_slice(self) -> int:
        """Network evaluations per scored slice at the current parameters (the cost, docs/privacy.md)."""
        raise NotImplementedError

    def score(self, generator, dataset, seed: int, *, reference=None) -> np.ndarray:
        """One score per slice of ``dataset`` (float64 [N]); higher = more likely a training member."""
        raise NotImplementedError

    def info(self, ctx: interface.AuditContext | None = None) -> dict:
        return {
            "threat_model": self.threat_model,
            "needs": list(self.needs),
            "params": dict(self.params),
            "queries_per_slice": self.queries_per_slice(),
        }

    def evaluate(self, ctx: interface.AuditContext) -> dict:
        """Score the white-box candidates with :meth:`score` (``run.run_attacks``); skipped without the hooks."""
        return run_attacks([self], generator=ctx.generator, train=ctx.train, holdout=ctx.holdout, seed=ctx.seed,
                           cap=ctx.config.max_whitebox_slices, subsample=interface.subsample_patients,
                           steps=ctx.steps, ev=ctx.ev)


def arrays(ds) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(ds.images, dtype=np.float32), np.asarray(ds.masks)


def fixed_noise(shape: tuple[int, ...], *, seed: int, draw: int = 0) -> np.ndarray:
    """Standard normal noise [N, H, W], a pure function of (seed, draw): the same slices get the same noise."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EC, int(draw)]).standard_normal(shape).astype(np.float32)


def timestep(generator, frac: float) -> int:
    """Integer noise level at ``frac`` of the generator's grid (0 = clean … num_train_timesteps − 1)."""
    T = int(getattr(generator, "num_train_timesteps", 1000))
    return int(min(T - 1, max(0, round(float(frac) * T))))


def ddim_step(generator, x: np.ndarray, eps: np.ndarray, t_from: int, t_to: int) -> np.ndarray:
    """Deterministic DDIM move on x_t = a_t·x_0 + s_t·ε: estimate x_0 at ``t_from``, re-noise it to ``t_to`` with ε̂."""
    a0, s0 = generator.noise_schedule(t_from)
    a1, s1 = generator.noise_schedule(t_to)
    x0_hat = (x - s0 * eps) / max(a0, 1e-8)
    return a1 * x0_hat + s1 * eps


def norm(x: np.ndarray, p: float = 2.0) -> np.ndarray:
    """Per-slice L_p norm of [N, H, W] maps, averaged over pixels (mean |x|^p)^(1/p)."""
    return np.mean(np.abs(x.astype(np.float64)) ** p, axis=(1, 2)) ** (1.0 / p)
