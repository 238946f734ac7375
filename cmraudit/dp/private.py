"""DP-SGD for generator training, patient-level, on Opacus (docs/design.md § 6): the torch part.

:class:`~cmraudit.dp.config.DPConfig` holds the options (``--dp-epsilon``, ``--dp-delta``, ``--max-grad-norm``,
``--accountant``, ``--noise-multiplicity``); :func:`make_private` turns a module, its optimiser and a slice dataset into
a :class:`PrivateTraining` whose data loader samples *patients* (Poisson, rate q, one slice per
sampled patient), whose optimiser clips each per-patient gradient to C and adds N(0, σ²C²) noise,
and whose accountant tracks ε per patient. :func:`compose_budget` builds the ``generator.dp`` block
of report.json from the stages' :class:`StageBudget`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from .accounting import StageBudget, noise_multiplier_for
from .config import DPConfig
from .module import fix_module, multiplicity_loss
from .sampler import PatientPoissonSampler, empty_safe_collate

__all__ = ["PrivateTraining", "make_private"]


@dataclass
class PrivateTraining:
    """What :func:`make_private` returns: use these objects in place of the originals.

    ``module`` is Opacus's GradSampleModule (``unwrapped`` is the network to save/EMA);
    ``optimizer`` a DPOptimizer (clip C per patient, noise σ·C, divide by ``expected_batch_size``);
    ``data_loader`` yields one batch of slices per step with at most one slice per patient;
    ``sample_rate`` q (per patient and step); ``steps`` the planned number of optimiser steps the noise
    was calibrated for; ``noise_multiplier`` σ.
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    data_loader: torch.utils.data.DataLoader
    privacy_engine: Any
    sampler: PatientPoissonSampler
    dp: DPConfig
    noise_multiplier: float
    sample_rate: float
    steps: int
    n_patients: int
    expected_batch_size: float
    module_changes: list[str] = field(default_factory=list)

    @property
    def accountant(self) -> str:
        return self.dp.accountant

    @property
    def unwrapped(self) -> nn.Module:
        return getattr(self.module, "_module", self.module)

    @property
    def steps_taken(self) -> int:
        return int(sum(n for _, _, n in self.privacy_engine.accountant.history))

    def epsilon_spent(self) -> float:
        """ε spent so far (at ``dp.delta``) for the steps actually taken."""
        if self.steps_taken == 0:
            return 0.0
        return float(self.privacy_engine.accountant.get_epsilon(delta=self.dp.delta))

    def check_budget(self) -> None:
        """Raise when more steps were run than the noise was calibrated for (ε would exceed the target)."""
        if self.steps_taken > self.steps:
            raise UsageError(
                f"DP training ran {self.steps_taken} steps but the noise was calibrated for {self.steps}; "
                f"ε spent {self.epsilon_spent():.3f} exceeds the target {self.dp.epsilon}; "
                "stop at PrivateTraining.steps"
            )

    def noise_only_step(self) -> None:
        """The optimiser step for an *empty* Poisson batch: zero clipped gradient + N(0, σ²C²) noise.

        Call it instead of forward/backward when a batch has no slice (probability (1 − q)^n_patients per
        step). Skipping the step instead would change the mechanism the accountant analysed. (MONAI's
        attention blocks cannot run on a zero-length batch, so the forward pass is not an option.)
        """
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.optimizer.params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
        self.optimizer.step()

    def step(self, batch_loss: Callable[[], torch.Tensor], *, empty: bool = False) -> float | None:
        """One DP-SGD step: zero grads, ``K = dp.noise_multiplicity`` calls of ``batch_loss()`` (each a
        forward pass of ``self.module`` returning the batch-mean loss with fresh timesteps/noise), backward,
        per-patient clipping, noise, accounting, optimiser update. ``empty=True`` (no slice sampled) makes a
        noise-only step. Returns the mean loss (None for an empty batch).
        """
        self.optimizer.zero_grad(set_to_none=True)
        if empty:
            self.noise_only_step()
            return None
        loss = multiplicity_loss(lambda _: batch_loss(), None, k=self.dp.noise_multiplicity)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def batch_indices(self, step: int) -> np.ndarray:
        """Slice indices of global step ``step`` (pure function of (seed, step)); may be empty."""
        return self.sampler.indices_for_step(step)

    def batches(self) -> Iterator[Any]:
        """The collated batches of steps ``steps_taken … steps − 1`` (resumes where the accountant stands)."""
        dataset, collate = self.data_loader.dataset, self.data_loader.collate_fn
        for step in range(self.steps_taken, self.steps):
            yield collate([dataset[int(i)] for i in self.sampler.indices_for_step(step)])

    def budget(self, name: str) -> StageBudget:
        return StageBudget(
            name=name, epsilon=self.epsilon_spent(), delta=float(self.dp.delta), accountant=self.dp.accountant,
            noise_multiplier=float(self.noise_multiplier), sample_rate=float(self.sample_rate), steps=self.steps_taken,
            max_grad_norm=float(self.dp.max_grad_norm), noise_multiplicity=int(self.dp.noise_multiplicity),
            target_epsilon=float(self.dp.epsilon), n_patients=self.n_patients,
            expected_batch_size=float(self.expected_batch_size),
        )

    def state_dict(self) -> dict:
        """Accountant history and sampler position: save with each checkpoint, restore on resume."""
        return {"accountant_history": [list(h) for h in self.privacy_engine.accountant.history],
                "sampler_epoch": int(self.sampler.epoch), "noise_multiplier": float(self.noise_multiplier),
                "sample_rate": float(self.sample_rate)}

    def load_state_dict(self, state: dict) -> None:
        if not math.isclose(state["noise_multiplier"], self.noise_multiplier) or \
                not math.isclose(state["sample_rate"], self.sample_rate):
            raise UsageError(
                f"cannot resume DP training: the checkpoint used σ={state['noise_multiplier']}, "
                f"q={state['sample_rate']} "
                f"but this run computed σ={self.noise_multiplier}, q={self.sample_rate}; resume with the same options"
            )
        self.privacy_engine.accountant.history = [(float(s), float(q), int(n))
                                                  for s, q, n in state["accountant_history"]]
        self.sampler.set_epoch(int(state["sampler_epoch"]))

    def resume_at(self, step: int) -> None:
        """Tell the accountant that ``step`` steps were already taken (same σ and q) before a resume."""
        if not 0 <= int(step) <= self.steps:
            raise UsageError(f"cannot resume DP training at step {step}: "
                             f"the noise was calibrated for {self.steps} steps")
        self.privacy_engine.accountant.history = [(self.noise_multiplier, self.sample_rate, int(step))] if step else []


def _planned_steps(*, n_patients: int, batch_size: float, epochs: float | None, steps: int | None) -> int:
    if (epochs is None) == (steps is None):
        raise UsageError("make_private: give exactly one of epochs= or steps=")
    if steps is not None:
        if int(steps) < 1:
            raise UsageError(f"make_private: steps={steps} must be ≥ 1")
        return int(steps)
    if not epochs > 0:
        raise UsageError(f"make_private: epochs={epochs} must be > 0")
    return max(1, int(round(epochs * n_patients / batch_size)))


class _Indices(torch.utils.data.Dataset):
    """Stand-in dataset when the caller indexes its own data (``dataset=None``): item i is i."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return int(i)


def make_private(*, module: nn.Module, optimizer: torch.optim.Optimizer, dataset, patient_ids: Sequence[Any],
                 dp: DPConfig, batch_size: float, seed: int, epochs: float | None = None, steps: int | None = None,
                 collate_fn: Callable | None = None, num_workers: int = 0,
                 grad_sample_mode: str = "hooks") -> PrivateTraining:
    """Wrap a training stage for patient-level DP-SGD (Opacus PrivacyEngine).

    ``dataset[i]`` is slice i and ``patient_ids[i]`` its patient (``dataset=None`` when the caller indexes
    its own arrays with :meth:`PrivateTraining.batch_indices`); ``batch_size`` is the *expected* number
    of patients per step, so q = batch_size / n_patients; an epoch is n_patients / batch_size steps.
    σ is the smallest noise multiplier whose ε after the planned steps is ≤ ``dp.epsilon`` at
    ``dp.delta`` (Opacus ``get_noise_multiplier``). Opacus's own Poisson sampling is replaced by
    :class:`PatientPoissonSampler`; the DPOptimizer's ``expected_batch_size`` is set to q·n_patients
    and its accountant hook to q. If the module fails Opacus validation it is fixed (a copy) and the
    optimiser rebuilt on the copy (single param group only); ``module_changes`` lists what changed.
    The loss to backprop must be the *mean over the batch* of per-example losses (see :func:`dp_mean`).
    """
    from opacus import PrivacyEngine

    if not isinstance(dp, DPConfig) or not dp.enabled:
        raise UsageError(f"make_private needs a DPConfig with a finite --dp-epsilon; got {dp!r} "
                         "(train without DP instead)")
    patient_ids = list(patient_ids)
    if dataset is None:
        dataset = _Indices(len(patient_ids))
    if len(patient_ids) != len(dataset):
        raise UsageError(f"make_private: {len(patient_ids)} patient_ids for {len(dataset)} slices; "
                         "give one id per slice")
    n_patients = len(set(patient_ids))
    problems = []
    if n_patients < 2:
        problems.append(f"only {n_patients} patient(s) in the training set; DP-SGD needs several")
    if not 0 < batch_size <= n_patients:
        problems.append(f"batch_size={batch_size} (expected patients per step) must be in (0, {n_patients}]")
    if dp.delta >= 1.0 / max(n_patients, 1):
        problems.append(f"--dp-delta {dp.delta} must be < 1/n_patients = {1.0 / n_patients:.3g} (e.g. 1e-5)")
    if problems:
        raise UsageError("make_private: " + "; ".join(problems))
    q = float(batch_size) / n_patients
    total = _planned_steps(n_patients=n_patients, batch_size=batch_size, epochs=epochs, steps=steps)
    sigma = dp.noise_multiplier if dp.noise_multiplier is not None else noise_multiplier_for(
        epsilon=dp.epsilon, delta=dp.delta, sample_rate=q, steps=total, accountant=dp.accountant)

    fixed, changes = fix_module(module)
    if fixed is not module:
        if len(optimizer.param_groups) != 1:
            raise UsageError("make_private: the module had to be fixed for Opacus and the optimiser has several "
                             "param groups; call cmraudit.dp.fix_module(module) before building the optimiser")
        optimizer = type(optimizer)(fixed.parameters(), **optimizer.defaults)
        module = fixed

    sampler = PatientPoissonSampler(patient_ids, sample_rate=q, steps=max(1, int(round(n_patients / batch_size))),
                                    seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                         collate_fn=empty_safe_collate(dataset, collate_fn))
    device = next(module.parameters()).device
    noise_gen = torch.Generator(device=device)
    noise_gen.manual_seed(int(seed))
    with warnings.catch_warnings():
        # secure_mode is off on purpose (seeded, reproducible noise; stated in docs/dp.md).
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=dp.accountant)
        module, optimizer, loader = engine.make_private(
            module=module, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
            max_grad_norm=dp.max_grad_norm, poisson_sampling=False, noise_generator=noise_gen,
            grad_sample_mode=grad_sample_mode,
        )
    # Opacus derived these from len(loader) and len(dataset) (slices); the unit here is the patient.
    optimizer.expected_batch_size = q * n_patients
    optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=q))
    return PrivateTraining(module=module, optimizer=optimizer, data_loader=loader, privacy_engine=engine,
                           sampler=sampler, dp=dp, noise_multiplier=sigma, sample_rate=q, steps=total,
                           n_patients=n_patients, expected_batch_size=q * n_patients, module_changes=changes)
