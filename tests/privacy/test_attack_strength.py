"""Issue 19: the strongest new attack beats the loss attack on micro models with a real membership signal.

Setting (also ``bench/bench_attacks.py``): a phantom of 50 subjects × 4 slices at 32², split by patient 40/40/20;
micro DDPM and FM image models trained 800 steps on the 20 train patients (160 slices), which puts the loss
attack's patient-level AUC in the 0.6–0.85 band the issue asks for. Members: the 20 train patients; non-members:
the 20 holdout patients. Three seeds per generator, each trained in its own process (two at a time where
the test process has two CPUs to itself).

Checked: the loss attack's mean patient AUC lies in [0.6, 0.85] for each generator, and ``grad_norm`` beats it by
≥ 0.05 patient-level AUC on average over the seeds. Measured when written (load ≈ 3): ddpm loss 0.625 / 0.673 /
0.755 vs grad_norm 0.693 / 0.850 / 0.865; fm loss 0.665 / 0.615 / 0.805 vs 0.713 / 0.725 / 0.895.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from tests.conftest import cpu_share

STEPS = 800
SEEDS = (0, 1, 2)


def _trial(gname: str, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from cmraudit.data.dataset import Dataset
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.data.splits import SplitFractions, split_patients
    from cmraudit.generators.registry import get_plugin
    from cmraudit.privacy.mia.attacks import get_attack
    from cmraudit.privacy.mia.metrics import patient_scores, roc_metrics
    from cmraudit.privacy.mia.whitebox import loss_matrix, loss_scores

    ds = make_phantom(PhantomConfig(subjects=50, slices=4, size=32), seed=seed)
    sp = split_patients(ds, seed=seed, fractions=SplitFractions(0.4, 0.4, 0.2)).apply(ds)
    g = get_plugin(gname).cls.from_preset("micro", steps=STEPS, mask_steps=1, device="cpu")
    g.fit(sp["train"], seed=seed, progress=False)
    cand = Dataset.concat([sp["train"], sp["holdout"]])
    member = np.r_[np.ones(len(sp["train"]), bool), np.zeros(len(sp["holdout"]), bool)]
    groups = cand.patient_id.astype(str)
    scores = {
        "loss": loss_scores(loss_matrix(g, cand, timesteps=(50, 150, 300, 500), seed=seed)),
        "grad_norm": get_attack("grad_norm").score(g, cand, seed),
    }
    out = {}
    for name, s in scores.items():
        ps, pm, _ = patient_scores(s, member, groups)
        out[name] = {"patient_auc": roc_metrics(ps, pm)["auc"], "slice": roc_metrics(s, member)}
        out[name]["slice"] = {k: v for k, v in out[name]["slice"].items() if k not in ("fpr", "tpr")}
    return out


@pytest.fixture(scope="module")
def trials():
    jobs = [(g, s) for g in ("ddpm", "fm") for s in SEEDS]
    with ProcessPoolExecutor(max_workers=min(2, cpu_share()), mp_context=mp.get_context("spawn")) as ex:
        res = list(ex.map(_trial, *zip(*jobs)))
    return dict(zip(jobs, res))


@pytest.mark.slow
@pytest.mark.parametrize("gname", ["ddpm", "fm"])
def test_grad_norm_beats_the_loss_attack(trials, gname):
    loss = np.array([trials[(gname, s)]["loss"]["patient_auc"] for s in SEEDS])
    grad = np.array([trials[(gname, s)]["grad_norm"]["patient_auc"] for s in SEEDS])
    assert 0.6 <= loss.mean() <= 0.85, (gname, loss)
    assert (grad - loss).mean() >= 0.05, (gname, loss, grad)
