"""Patient-level Poisson sampler: one slice per sampled patient, inclusion rate q, seeded."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from cmraudit.errors import UsageError
from cmraudit.dp import DPConfig, PatientPoissonSampler, make_private

# Opacus hooks a module whose input does not require grad; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def _patients(n_patients=30, seed=0):
    """Slices per patient vary (1..12) and patients are interleaved, as after a concat of datasets."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 13, size=n_patients)
    ids = np.repeat([f"P{i:03d}" for i in range(n_patients)], counts)
    return ids[rng.permutation(len(ids))]


def test_never_two_slices_of_one_patient_in_a_step():
    ids = _patients()
    sampler = PatientPoissonSampler(ids, sample_rate=0.4, steps=200, seed=1)
    sizes = []
    for batch in sampler:
        assert all(0 <= i < len(ids) for i in batch)
        patients = ids[batch]
        assert len(set(patients)) == len(patients), "two slices of one patient in the same step"
        sizes.append(len(batch))
    assert len(sizes) == len(sampler) == 200
    assert len(set(sizes)) > 3  # Poisson: the batch size varies


def test_inclusion_rate_is_q_per_patient_not_per_slice():
    ids = _patients(n_patients=20, seed=3)
    q, steps = 0.25, 800
    sampler = PatientPoissonSampler(ids, sample_rate=q, steps=steps, seed=7)
    hits = {p: 0 for p in set(ids)}
    for batch in sampler:
        for p in ids[batch]:
            hits[p] += 1
    # Every patient, whatever its number of slices, is in a step with probability q.
    lo, hi = stats.binom.ppf([1e-4, 1 - 1e-4], steps, q)
    assert all(lo <= h <= hi for h in hits.values()), hits
    # The batch size is Binomial(n_patients, q) with mean q * n_patients.
    sizes = np.array([len(b) for b in PatientPoissonSampler(ids, sample_rate=q, steps=2000, seed=8)])
    assert sizes.mean() == pytest.approx(q * 20, abs=0.2)
    assert sampler.expected_batch_size == pytest.approx(q * 20)


def test_slice_drawn_uniformly_within_patient():
    ids = np.array(["A"] * 4 + ["B"])  # patient A has slices 0..3
    sampler = PatientPoissonSampler(ids, sample_rate=1.0, steps=4000, seed=0)
    picks = np.array([[i for i in b if i < 4][0] for b in sampler])
    counts = np.bincount(picks, minlength=4)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_seeded_and_fresh_each_epoch():
    ids = _patients()
    a = list(PatientPoissonSampler(ids, sample_rate=0.3, steps=20, seed=5))
    s = PatientPoissonSampler(ids, sample_rate=0.3, steps=20, seed=5)
    first, second = list(s), list(s)
    assert first == a
    assert first != second  # a new epoch draws new batches
    s.set_epoch(1)
    assert list(s) == second  # resumable
    # Stateless: step 25 of the sampler is the 6th batch of the second epoch.
    assert s.indices_for_step(25).tolist() == second[5]
    assert list(PatientPoissonSampler(ids, sample_rate=0.3, steps=20, seed=6)) != a


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="sample_rate"):
        PatientPoissonSampler(["a", "b"], sample_rate=0.0, steps=5, seed=0)
    with pytest.raises(UsageError, match="empty"):
        PatientPoissonSampler([], sample_rate=0.5, steps=5, seed=0)


class _Slices(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x = torch.randn(n, 6)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], torch.tensor(i)


def test_accountant_is_told_the_patient_sample_rate():
    ids = _patients(n_patients=24, seed=2)
    net = torch.nn.Linear(6, 1)
    pt = make_private(module=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1), dataset=_Slices(len(ids)),
                      patient_ids=list(ids), dp=DPConfig(epsilon=2.0, delta=1e-3, accountant="rdp"),
                      batch_size=6, steps=10, seed=0)
    assert pt.sample_rate == pytest.approx(6 / 24)
    assert pt.sampler.sample_rate == pt.sample_rate
    assert pt.optimizer.expected_batch_size == pytest.approx(6.0)  # patients, not slices
    seen = []
    for x, idx in pt.batches():
        seen.append(idx.tolist())
        pt.optimizer.zero_grad()
        if len(x) == 0:
            pt.noise_only_step()
            continue
        net_out = pt.module(x).squeeze(1)
        (net_out ** 2).mean().backward()
        pt.optimizer.step()
    assert len(seen) == pt.steps == pt.steps_taken == 10
    for batch in seen:
        assert len(set(ids[batch])) == len(batch)
    history = pt.privacy_engine.accountant.history
    assert [(round(s, 9), q) for s, q, _ in history] == [(round(pt.noise_multiplier, 9), pt.sample_rate)]
    assert 0 < pt.epsilon_spent() <= 2.0
