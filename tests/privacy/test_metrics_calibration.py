"""MIA metrics against sklearn, the low-FPR support rule, and the copy threshold's FPR on data where the truth is known."""
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
        res = detect_copies(train_feats=train, holdout_feats=holdout, synthetic_feats=syn, train_patients=pats, space="g",
                            alpha=alpha, carlini_k=5)
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
