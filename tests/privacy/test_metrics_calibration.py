"""MIA metrics against sklearn, the low-FPR support rule, and the copy threshold's FPR on data where the truth is
known."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from cmraudit.estimates import Estimate
from cmraudit.privacy.copies import calibrated_threshold, corrected_rate, detect_copies, fpr_upper_bound
from cmraudit.privacy.mia.metrics import evaluate_attack, roc_metrics


def test_auc_and_tpr_match_definitions():
    rng = np.random.default_rng(0)
    member = rng.random(3000) < 0.5
    scores = rng.normal(size=3000) + member * 0.7
    scores[:100] = np.round(scores[:100], 1)  # ties
    r = roc_metrics(scores, member)
    assert abs(r["auc"] - roc_auc_score(member, scores)) < 1e-12
    # TPR at the last ROC point with FPR <= 1 %: brute force over thresholds
    best = 0.0
    for thr in np.unique(scores):
        fpr = (scores[~member] >= thr).mean()
        if fpr <= 0.01:
            best = max(best, (scores[member] >= thr).mean())
    assert abs(r["tpr_at_1pct_fpr"] - best) < 1e-12


def test_evaluate_attack_levels_ci_and_unsupported_low_fpr():
    rng = np.random.default_rng(1)
    pats = np.repeat([f"p{i}" for i in range(60)], 5)
    member = np.repeat(np.arange(60) < 30, 5)
    scores = rng.normal(size=300) + member * 1.0 + np.repeat(rng.normal(size=60), 5)
    res = evaluate_attack("x", scores=scores, member=member, groups=pats, seed=0, n_resamples=200).to_dict()
    for level, n in (("slice", 300), ("patient", 60)):
        auc = res[level]["auc"]
        assert auc["ci"][0] <= auc["value"] <= auc["ci"][1] and auc["n"] == n
        assert res[level]["tpr_at_0_1pct_fpr"]["status"] == "skipped"  # < 1000 non-members
        assert len(res[level]["roc"]["fpr"]) <= 200
        adv = res[level]["advantage"]["value"]
        assert 0 < adv <= 1  # cross-fitted, so below the in-sample max |TPR-FPR|
    assert res["slice"]["tpr_at_1pct_fpr"]["unit"] == "slice"  # 150 non-member slices >= 100
    assert res["patient"]["tpr_at_1pct_fpr"]["status"] == "skipped"  # 30 non-member patients < 100


def test_calibrated_threshold_fpr_on_known_truth():
    """Novel points iid with holdout: flagged share ≈ α; copies (train + tiny noise) all flagged."""
    rng = np.random.default_rng(2)
    d = 16
    train = rng.normal(size=(4000, d)).astype(np.float32)
    holdout = rng.normal(size=(4000, d)).astype(np.float32)
    novel = rng.normal(size=(8000, d)).astype(np.float32)
    copies = train[:200] + rng.normal(0, 1e-3, (200, d)).astype(np.float32)
    syn = np.concatenate([novel, copies])
    pats = np.array([f"t{i}" for i in range(4000)])
    for alpha in (0.01, 0.05):
        res = detect_copies(
            train_feats=train,
            holdout_feats=holdout,
            synthetic_feats=syn,
            train_patients=pats,
            space="g",
            alpha=alpha,
            carlini_k=5,
        )
        flag = res.per_slice["copy"]
        fpr = flag[:8000].mean()
        # binomial sd at n=8000 plus the threshold's own sampling error: within ±40 % of α
        assert 0.6 * alpha <= fpr <= 1.4 * alpha, (alpha, fpr)
        assert flag[8000:].all()
        cr = res.copy_detection["copy_rate"]
        true_rate = 200 / len(syn)
        assert cr.ci[0] <= true_rate <= cr.ci[1], (cr, true_rate)


def test_threshold_order_statistic_and_correction():
    tau, a = calibrated_threshold(np.arange(1, 100, dtype=float), alpha=0.05)
    assert tau == 5.0 and a == 5 / 100
    tau, a = calibrated_threshold(np.arange(1, 11, dtype=float), alpha=1e-3)
    assert tau == 1.0 and a == 1 / 11  # small holdout: the bound is 1/(n+1), stated in the report
    e = corrected_rate(Estimate(0.06, (0.04, 0.09), 400, "slice"), 0.01)
    assert abs(e.value - 0.05 / 0.99) < 1e-12 and e.ci[1] == 0.09 and abs(e.ci[0] - 0.03 / 0.99) < 1e-12
    e = corrected_rate(Estimate(0.06, (0.04, 0.09), 400, "slice"), 0.01, 0.03)
    assert abs(e.value - 0.05 / 0.99) < 1e-12 and abs(e.ci[0] - 0.01 / 0.97) < 1e-12
    # k-th of n order statistic: FPR ~ Beta(k, n+1-k); k=1, n=96 -> 95 % quantile 1 - 0.05**(1/96)
    assert abs(fpr_upper_bound(1, 96) - (1 - 0.05 ** (1 / 96))) < 1e-9


def _clustered(rng, n_pat, slices, d, prefix, centres=None, spread=0.3):
    """Slices clustered by patient: patient centre + small per-slice offset (like slices of one heart)."""
    c = rng.normal(size=(n_pat, d)) if centres is None else centres
    x = (np.repeat(c, slices, 0) + rng.normal(0, spread, (n_pat * slices, d))).astype(np.float32)
    return x, np.repeat([f"{prefix}{i:03d}" for i in range(n_pat)], slices)


def test_near_twin_novel_patient_is_not_called_a_copy():
    """Planted truth: 20 novel patients, one a near-twin of a training patient (own slices, centre 0.05 away).
    Its slices are flagged together; a slice-level FPR bound would call that copying, the patient-level one must not."""
    rng = np.random.default_rng(3)
    d, s = 8, 8
    train, tp = _clustered(rng, 60, s, d, "t")
    holdout, hp = _clustered(rng, 30, s, d, "h")
    twin_centre = train[:s].mean(0, keepdims=True) + rng.normal(0, 0.05, (1, d))
    novel_c = np.concatenate([twin_centre, rng.normal(size=(19, d))])
    syn, _ = _clustered(rng, 20, s, d, "n", centres=novel_c)
    kw = dict(
        train_feats=train,
        holdout_feats=holdout,
        synthetic_feats=syn,
        train_patients=tp,
        space="g",
        alpha=1e-3,
        carlini_k=5,
    )
    slice_level = detect_copies(**kw)
    patient_level = detect_copies(**kw, holdout_patients=hp)
    flag = patient_level.per_slice["copy"]
    assert flag[:s].sum() >= 3 and flag[s:].sum() <= 1  # the twin's slices are flagged together
    assert slice_level.copy_detection["copies_detected"]  # the slice-level bound (1/241) is fooled
    cd = patient_level.copy_detection
    assert not cd["copies_detected"] and cd["copy_rate"].ci[0] == 0.0
    assert cd["alpha_upper_unit"] == "patient" and cd["n_holdout_patients"] == 30
    assert cd["patients_copied"].ci[0] == 0.0
    assert cd["alpha_upper"] > slice_level.copy_detection["alpha_upper"]


def test_closer_to_train_subsamples_patients_not_slices():
    """Novel patients against 200 train vs 50 holdout patients: subsampling train *slices* to the holdout's size keeps
    200 patients and pulls novel slices towards train; subsampling *patients* gives a fair 50/50 comparison."""
    rng = np.random.default_rng(4)
    d, s = 8, 8
    train, tp = _clustered(rng, 200, s, d, "t")
    holdout, hp = _clustered(rng, 50, s, d, "h")
    syn, _ = _clustered(rng, 100, s, d, "n")
    kw = dict(train_feats=train, holdout_feats=holdout, synthetic_feats=syn, train_patients=tp, space="g", carlini_k=5)
    by_slices = detect_copies(**kw).copy_detection
    by_patients = detect_copies(**kw, holdout_patients=hp).copy_detection
    assert by_slices["closer_to_train_share"].value > 0.55 and by_slices["closer_to_train_pvalue"] < 1e-3
    assert 0.4 < by_patients["closer_to_train_share"].value < 0.6 and by_patients["closer_to_train_pvalue"] > 0.01


def test_bootstrap_does_not_depend_on_the_number_of_threads():
    import torch

    from cmraudit.privacy.mia.metrics import evaluate_level

    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(60), 5).astype(str)
    member = groups.astype(int) % 2 == 0
    scores = np.round(rng.normal(size=300) + 0.4 * member, 1)  # ties too
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)  # the resamples' worker count
            out.append(evaluate_level(scores, member, groups, unit="slice", seed=3, n_resamples=200).to_dict())
    finally:
        torch.set_num_threads(before)
    assert out[0] == out[1]
