"""Samples at a few points of training (issue 17): written under log_to, deterministic, training unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cmraudit.generators.registry import get_plugin
from cmraudit.generators.snapshots import FRACTIONS, K
from cmraudit.generators.train_log import log_to
from cmraudit.testing import make_toy_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fit(ds, log_dir=None):
    gen = get_plugin("ddpm").cls.from_preset("micro", steps=8, mask_steps=2, device="cpu")
    if log_dir is None:
        return gen.fit(ds, seed=0, progress=False)
    with log_to(log_dir):
        return gen.fit(ds, seed=0, progress=False)


def test_snapshots_at_fixed_fractions_without_changing_training(tmp_path):
    ds = make_toy_dataset(n_patients=3, slices=2, size=32)
    a = _fit(ds, tmp_path / "a")
    b = _fit(ds)  # no log directory: no snapshots
    _fit(ds, tmp_path / "c")  # a second fit with snapshots, for determinism
    z = np.load(tmp_path / "a" / "snapshots" / "image_model.npz")
    assert z["steps"].tolist() == [round(f * 8) for f in FRACTIONS]
    assert z["images"].shape == (len(FRACTIONS), K, 32, 32) and z["masks"].shape == (len(FRACTIONS), K, 32, 32)
    assert np.abs(z["images"].astype(np.float32)).max() <= 1.0
    # the masks come from the mask model (synthetic), the same at every point, never a training mask
    assert all((z["masks"][i] == z["masks"][0]).all() for i in range(len(FRACTIONS)))
    train_masks = np.asarray(ds.masks)
    assert not any((m == t).all() for m in z["masks"][0] for t in train_masks)
    assert not (z["images"][0] == z["images"][-1]).all()  # the draws change as training goes
    # deterministic, and the weights are those of a fit without snapshots
    assert (np.load(tmp_path / "c" / "snapshots" / "image_model.npz")["images"] == z["images"]).all()
    sa, sb = a.image_modules_["image"].state_dict(), b.image_modules_["image"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
