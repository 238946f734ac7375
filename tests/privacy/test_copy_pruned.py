"""The copy search with the certified pruned exact search (where it applies: here MIN_PAIRS lowered to reach it at
test size) decides exactly what it decides with FAISS's exhaustive search: same flags, same threshold, distances to
the GEMM's float32 rounding."""
from __future__ import annotations

import numpy as np
import pytest

from cmraudit.data.phantom import PhantomConfig, make_phantom
from cmraudit.features import neighbours, pruned_knn
from cmraudit.privacy import copies

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_copy_detection_is_the_same_with_pruned_searches(monkeypatch):
    ds = make_phantom(PhantomConfig(subjects=300, slices=8, size=32), seed=11)
    x = ds.images.reshape(len(ds.images), -1).astype(np.float32)
    train, holdout, syn = x[:900], x[900:1800], x[1800:2400].copy()
    syn[:30] = train[:30]  # 5 % exact copies
    pats = np.asarray(ds.patient_id)[:900]
    kw = dict(train_feats=train, holdout_feats=holdout, synthetic_feats=syn, train_patients=pats, space="pixel")
    monkeypatch.setenv("CMRAUDIT_EXACT_KNN_INT8", "1")
    monkeypatch.setattr(pruned_knn, "MIN_PAIRS", 0)
    assert neighbours.prunes(holdout, train, 2) and neighbours.prunes(syn, train, 2)
    rev_a = {}
    a = copies.detect_copies(**kw, reverse=rev_a)
    with monkeypatch.context() as m:
        m.setattr(copies, "prunes", lambda *args, **kwargs: False)
        m.setattr(neighbours, "prunes", lambda *args, **kwargs: False)
        rev_b = {}
        b = copies.detect_copies(**kw, reverse=rev_b)
    assert np.array_equal(a.per_slice["copy"], b.per_slice["copy"])
    assert a.per_slice["copy"][:30].all()
    da, db = a.copy_detection, b.copy_detection
    assert abs(da["threshold"] - db["threshold"]) <= 2e-2
    for key in ("train", "holdout"):
        np.testing.assert_allclose(rev_a[key], rev_b[key], atol=2e-2)
