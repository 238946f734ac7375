"""Patient-level Poisson sampling for DP-SGD.

Each step samples every patient independently with probability ``q`` and draws one slice uniformly
from each sampled patient. A patient therefore contributes at most one (clipped) per-sample gradient
per step, and the accountant's subsampled-Gaussian analysis with sample rate ``q`` holds for
add/remove-one-patient neighbours: ε protects a whole patient, not a slice.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler, default_collate

from ..errors import UsageError


class PatientPoissonSampler(Sampler[list[int]]):
    """Batch sampler yielding lists of slice indices; use as ``DataLoader(batch_sampler=...)``.

    Parameters
    ----------
    patient_ids : one patient identifier per slice (index i of the dataset ↔ ``patient_ids[i]``).
    sample_rate : q, the probability that a given patient is in a step (0 < q ≤ 1).
    steps : number of batches per iteration over the sampler (``len(sampler)``).
    seed : seeds every choice; step s draws from ``(seed, s)``; the k-th ``iter()`` yields steps
        k·steps … (k+1)·steps − 1 unless :meth:`set_epoch` is called.

    Batch sizes vary (Binomial(n_patients, q)); an empty batch is possible and must still be an
    optimiser step (the noise is added anyway) for the accounting to hold.
    """

    def __init__(self, patient_ids: Sequence[Any], *, sample_rate: float, steps: int, seed: int):
        ids = np.asarray(list(patient_ids), dtype=object)
        problems = []
        if len(ids) == 0:
            problems.append("patient_ids is empty")
        if not 0 < float(sample_rate) <= 1:
            problems.append(f"sample_rate={sample_rate} must be in (0, 1]")
        if int(steps) < 1:
            problems.append(f"steps={steps} must be ≥ 1")
        if problems:
            raise UsageError("PatientPoissonSampler: " + "; ".join(problems))
        codes: dict[Any, int] = {}
        patient_of_slice = np.fromiter((codes.setdefault(p, len(codes)) for p in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(patient_of_slice, kind="stable")
        counts = np.bincount(patient_of_slice, minlength=len(codes))
        self.patients = list(codes)  # patient id of code k
        self.patient_of_slice = patient_of_slice
        self.slices_sorted = order  # slice indices grouped by patient code
        self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.counts = counts
        self.sample_rate = float(sample_rate)
        self.steps = int(steps)
        self.seed = int(seed)
        self.epoch = 0

    @property
    def n_patients(self) -> int:
        return len(self.patients)

    @property
    def expected_batch_size(self) -> float:
        """q · n_patients: the expected number of patients (= slices) per step."""
        return self.sample_rate * self.n_patients

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` yield the steps of ``epoch`` (e.g. when resuming from a checkpoint)."""
        self.epoch = int(epoch)

    def indices_for_step(self, step: int) -> np.ndarray:
        """Slice indices of global step ``step``: a pure function of ``(seed, step)`` (stateless, resumable).

        Every patient is included independently with probability q; one of its slices is drawn uniformly.
        """
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 104729, int(step)])
        chosen = np.flatnonzero(rng.random(self.n_patients) < self.sample_rate)
        counts = self.counts[chosen]
        within = np.minimum((rng.random(len(chosen)) * counts).astype(np.int64), counts - 1)
        return self.slices_sorted[self.offsets[chosen] + within]

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1
        for step in range(epoch * self.steps, (epoch + 1) * self.steps):
            yield self.indices_for_step(step).tolist()


def _empty_like(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree[:0]
    if isinstance(tree, dict):
        return {k: _empty_like(v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple
        return type(tree)(*(_empty_like(v) for v in tree))
    if isinstance(tree, (list, tuple)):
        return type(tree)(_empty_like(v) for v in tree)
    return tree


def empty_safe_collate(dataset, collate_fn: Callable | None = None) -> Callable:
    """A collate function that turns an empty batch into zero-length tensors of the right shapes.

    The shapes and dtypes are those of ``collate_fn([dataset[0]])``; Opacus clips an empty batch to a
    zero gradient and still adds noise, so the step counts for the accountant.
    """
    collate_fn = collate_fn or default_collate
    template: list = []

    def collate(batch):
        if len(batch) == 0:
            if not template:
                template.append(_empty_like(collate_fn([dataset[0]])))
            return template[0]
        return collate_fn(batch)

    return collate
