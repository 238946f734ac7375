"""Mask plausibility on real anatomy (Sunnybrook, expert contours): real masks must pass."""
import os
from pathlib import Path

import numpy as np
import pytest

from cmraudit.fidelity.masks import check_masks


def _root():
    env = os.environ.get("CMRAUDIT_SHARED")
    cands = ([Path(env) / "data" / "sunnybrook"] if env else []) + [
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sunnybrook"
    ]
    return next((c for c in cands if (c / "link.csv").is_file()), None)


@pytest.mark.realdata
@pytest.mark.skipif(
    _root() is None, reason="real Sunnybrook subset not found (../shared/data/sunnybrook or $CMRAUDIT_SHARED)"
)
def test_real_sunnybrook_masks_are_plausible(tmp_path):
    from cmraudit.data.dataset import read_dataset
    from cmraudit.data.importers.dicom import import_sunnybrook
    from cmraudit.data.preprocess import PreprocessConfig

    import_sunnybrook(_root(), out=tmp_path / "sb", config=PreprocessConfig(crop=128), progress=False)
    ds = read_dataset(tmp_path / "sb")
    c = check_masks(ds.masks, ds.spacing_mm, annotated=ds.annotated)
    assert (c.rv_adjacent == -1).all()  # RV is unknown in Sunnybrook: never judged
    assert (c.one_component[:, 0] == -1).all()
    lv = c.one_component[:, 2]
    assert (lv[lv >= 0] == 1).mean() >= 0.95
    closed = c.myo_closed[c.myo_closed >= 0]
    assert len(closed) >= 30 and closed.mean() >= 0.9
    # an opened ring is caught: cut a gap through the MYO of the first annotated slice
    k = int(np.flatnonzero(c.myo_closed == 1)[0])
    m = np.asarray(ds.masks[k]).copy()
    rr, cc = np.nonzero(m == 3)
    r0, c0 = int(rr.mean()), int(cc.mean())
    row = m[r0]
    row[c0:][row[c0:] == 2] = 3  # LV leaks through the ring along one row
    m[r0] = row
    assert check_masks(m[None], annotated=ds.annotated[k : k + 1]).myo_closed[0] == 0
