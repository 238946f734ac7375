"""Found in review (session 21): what `sample` claims about the slices it draws for given masks."""
from __future__ import annotations

import numpy as np
import pytest

from cmraudit.data.dataset import read_dataset, write_dataset

from .conftest import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sample_for_masks_keeps_their_partial_labels(assets, tmp_path, capsys):
    """Slices drawn for the masks of a partially labelled set (e.g. Sunnybrook: LV only, or MYO and LV) were all
    written as annotated RV;MYO;LV, so the fidelity mask checks counted the unlabelled structures as missing."""
    ds = read_dataset(assets["ph"])
    ds.annotated = np.where(np.arange(len(ds)) % 2 == 0, 4, 6).astype(np.uint8)  # LV; MYO + LV
    write_dataset(ds, tmp_path / "partial")
    rc, _, err = cli(["sample", "--model", str(assets["model"]), "--masks", str(tmp_path / "partial"), "--out",
                      str(tmp_path / "syn")], capsys)
    assert rc == 0, err
    syn = read_dataset(tmp_path / "syn")
    assert np.array_equal(syn.annotated, ds.annotated)
