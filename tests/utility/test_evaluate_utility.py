import numpy as np
import pytest

from cmraudit.data.dataset import Dataset
from cmraudit.errors import NotFittedError, UsageError
from cmraudit.utility.evaluate import evaluate_utility, vendor_groups
from cmraudit.utility.segmentation import Segmenter


def _toy(n_pat, vendors, seed, size=32, per=3, tag="p"):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    ims, mks, pid, ven = [], [], [], []
    for p in range(n_pat):
        for _ in range(per):
            cy, cx = size / 2 + rng.uniform(-2, 2), size / 2 + rng.uniform(-2, 2)
            r = np.hypot(yy - cy, xx - cx)
            m = np.zeros((size, size), np.uint8)
            m[r < 9] = 2
            m[r < 6] = 3
            m[(np.hypot(yy - cy, xx - cx - 11) < 5) & (m == 0)] = 1
            im = np.where(m == 3, 0.8, np.where(m == 2, -0.3, np.where(m == 1, 0.6, -0.8))) + rng.normal(
                0, 0.05, (size, size)
            )
            ims.append(np.clip(im, -1, 1))
            mks.append(m)
            pid.append(f"{tag}{p}")
            ven.append(vendors[p % len(vendors)])
    return Dataset(images=np.array(ims, np.float32), masks=np.array(mks), patient_id=np.array(pid, object),
                   vendor=np.array(ven, object), spacing_mm=np.full((len(ims), 2), 1.5))


def test_evaluate_utility_shape_and_cross_vendor():
    train, test = _toy(8, "ABCD", 0), _toy(4, "ABCD", 1, tag="t")
    syn = _toy(4, "CD", 2, tag="s")  # rendered in vendor C/D style
    res = evaluate_utility(train=train, synthetic=syn, test=test, seed=0, iterations=3, progress=False)
    d = res.to_dict()
    assert set(d["regimes"]) == {"real", "synthetic", "real+synthetic"}
    for r in d["regimes"].values():
        for s in ("RV", "MYO", "LV"):
            e = r["dice"][s]
            assert set(e) >= {"value", "ci", "n", "unit"} and e["unit"] == "patient" and e["n"] == 4
            assert 0 <= e["value"] <= 1 and e["ci"][0] <= e["value"] <= e["ci"][1]
            assert r["hd95_mm"][s]["value"] <= d["missed_structure_penalty_mm"] + 1e-9
    assert d["regimes"]["real+synthetic"]["train_slices"] == len(train) + len(syn)  # mix 1.0 but only 12 synthetic
    cv = d["cross_vendor"]
    assert cv["source_vendors"] == ["A", "B"] and cv["target_vendors"] == ["C", "D"]
    assert set(cv["regimes"]) == {"real", "real+synthetic", "real_all_vendors"}
    assert cv["regimes"]["real"]["train_slices"] == 12  # 4 patients of vendors A/B × 3
    assert d["missed_structure_penalty_mm"] == pytest.approx(np.hypot(48, 48))


def test_cross_vendor_skipped_without_vendor_conditioning_or_vendors():
    train, test = _toy(8, "ABCD", 0), _toy(4, "ABCD", 1, tag="t")
    syn = _toy(2, "A", 2, tag="s")
    d = evaluate_utility(
        train=train, synthetic=syn, test=test, seed=0, iterations=2, regimes=("real",), progress=False
    ).to_dict()
    assert d["cross_vendor"]["regimes"]["real+synthetic"]["status"] == "skipped"
    assert vendor_groups(_toy(2, [""], 0), _toy(2, [""], 1)) is None


def test_bad_inputs_and_not_fitted():
    train = _toy(2, "A", 0)
    with pytest.raises(UsageError):
        evaluate_utility(train=train, synthetic=None, test=train, seed=0, regimes=("bogus",))
    with pytest.raises(NotFittedError):
        Segmenter().predict(np.zeros((1, 32, 32), np.float32))
    d = evaluate_utility(
        train=train, synthetic=None, test=train, seed=0, iterations=1, cross_vendor=False, progress=False
    ).to_dict()
    assert d["regimes"]["synthetic"]["status"] == "skipped"


def test_partial_labels_use_marginal_loss_and_unknown_is_not_scored():
    train = _toy(3, "A", 0)
    train.annotated[:] = 2 | 4  # no RV annotation
    seg = Segmenter(iterations=2, batch_size=4).fit(train, seed=0)
    assert np.isfinite(seg.loss_history_).all()
    test = _toy(2, "A", 1, tag="t")
    test.annotated[:] = 2 | 4
    d = evaluate_utility(
        train=train,
        synthetic=None,
        test=test,
        seed=0,
        iterations=1,
        regimes=("real",),
        cross_vendor=False,
        progress=False,
    ).to_dict()
    assert d["regimes"]["real"]["dice"]["RV"]["status"] == "skipped"


def test_segmenters_side_by_side_give_the_one_thread_results(monkeypatch):
    """On two threads the five segmenters train side by side, one thread each: the section equals a one-thread run
    one after the other (only the timings differ)."""
    import torch

    from cmraudit.cpu import ENV_SIDE_BY_SIDE

    train, test = _toy(8, "ABCD", 0), _toy(4, "ABCD", 1, tag="t")
    syn = _toy(4, "CD", 2, tag="s")

    def run():
        d = evaluate_utility(train=train, synthetic=syn, test=test, seed=0, iterations=6, progress=True).to_dict()
        d.pop("timings_s")
        for block in (d["regimes"], d["cross_vendor"]["regimes"]):
            for r in block.values():
                r.pop("train_time_s", None)
        return d

    torch.set_num_threads(2)  # the fixture restores one thread
    side = run()
    monkeypatch.setenv(ENV_SIDE_BY_SIDE, "0")
    torch.set_num_threads(1)
    assert run() == side
    assert list(side["regimes"]) == ["real", "synthetic", "real+synthetic"]
    assert list(side["cross_vendor"]["regimes"]) == ["real", "real+synthetic", "real_all_vendors"]
