"""``cmraudit plan`` (issue 13): sizes → detectable copy rate and decidable rules, in agreement with the gate,
the docs and the seed sweep."""
from __future__ import annotations

import json
import re
from pathlib import Path

from cmraudit.cli.main import main
from cmraudit.plan import auc_half_width, plan_audit, synthetic_needed
from cmraudit.report.policy import policy_from_dict

ROOT = Path(__file__).resolve().parents[1]


def test_plan_output_is_the_one_in_the_docs(capsys):
    docs = (ROOT / "docs" / "concepts.md").read_text()
    for args in (("50", "20", "400"), ("100", "50", "800")):
        assert main(["plan", "--train-patients", args[0], "--holdout-patients", args[1], "--synthetic", args[2]]) == 0
        out = capsys.readouterr().out.strip()
        assert out in docs, out


def test_decidability_follows_the_sizes():
    small = {r.rule: r for r in plan_audit(train_patients=50, holdout_patients=20, synthetic=400).rules}
    big = {r.rule: r for r in plan_audit(train_patients=100, holdout_patients=50, synthetic=800).rules}
    assert small["copy_rate"].decidable and not small["mia_auc"].decidable and big["mia_auc"].decidable
    assert small["patients_copied"].decidable is None  # off in the default policy
    assert small["dp_audit"].decidable and "--dp-audit" in small["dp_audit"].detail  # every rule has its line
    assert [r.rule for r in plan_audit(train_patients=50, holdout_patients=20, synthetic=400).rules] == list(
        policy_from_dict({}).rules)
    tiny = {r.rule: r for r in plan_audit(train_patients=30, holdout_patients=15, synthetic=96).rules}
    r_lo = plan_audit(train_patients=30, holdout_patients=15, synthetic=96).assumptions["recall_lower"]
    assert (
        not tiny["copy_rate"].decidable
        and f">= {synthetic_needed(0.02, recall_lower=r_lo)}" in tiny["copy_rate"].detail
    )
    full = policy_from_dict({"rules": {"mia_tpr_at_1pct_fpr": 0.05}})
    assert not {
        r.rule: r for r in plan_audit(train_patients=200, holdout_patients=99, synthetic=800, policy=full).rules
    }["mia_tpr_at_1pct_fpr"].decidable
    # chance-level AUC half-width (Mann–Whitney variance under H0)
    assert abs(auc_half_width(75, 38) - 1.959964 * ((75 + 38 + 1) / (12 * 75 * 38)) ** 0.5) < 1e-9


def test_detectable_rate_agrees_with_the_seed_sweep():
    """The recorded 20-seed sweep (bench/results/copy_sweep.json) measured where the power curve of Binomial-planted
    copies crosses 80 %; plan's minimum detectable rate at the sweep's size must agree within a factor of 1.5."""
    s = json.loads((ROOT / "bench" / "results" / "copy_sweep.json").read_text())["summary"]
    p = plan_audit(train_patients=50, holdout_patients=20, synthetic=400).min_detectable_copy_rate
    assert s["mdr_empirical"] is not None
    ratio = p / s["mdr_empirical"]
    assert ratio >= 1 / 1.5 and ratio <= 1.5, (p, s["mdr_empirical"])
    # and the sweep met the bars
    assert all(v["recall"] >= 0.95 for v in s["recall_per_transform"].values())
    assert (
        s["zero"]["not_fail"] >= 0.95 * s["seeds"] and s["zero"]["flagged_pooled"] <= 0.01 * s["zero"]["slices_pooled"]
    )
    assert s["rates"]["0.05"]["fail_ci_excludes_0"] >= 0.95 * s["seeds"]
    assert s["rates"]["0.02"]["fail_ci_excludes_0"] >= 0.8 * s["seeds"]
    for r in ("0.0", "0.01", "0.02", "0.05", "0.45"):
        assert s["rates"][r]["covered"] >= 0.9 * s["seeds"], r
    assert re.search(r"power curve crossing 80 %", (ROOT / "docs" / "privacy.md").read_text())


def test_gate_hint_names_the_plan_size():
    from cmraudit.report.gate import _power_hint

    est = {"value": 0.5, "ci": [0.3, 0.8], "n": 20, "unit": "patient", "ci_method": "patient-bootstrap"}
    hint = _power_hint(
        "mia_auc", est, 0.75, report={"privacy": {"data": {"train": {"patients": 50}, "holdout": {"patients": 20}}}}
    )
    assert hint is not None and "underpowered" in hint


def test_a_budget_no_size_can_reach_is_said_not_crashed():
    """Review (session 21): copy_rate = 1e-310 (a valid budget) crashed plan and gate with OverflowError (exit 5)."""
    for b in (1e-310, 0.0):
        assert synthetic_needed(b) is None
        pol = policy_from_dict({"rules": {"copy_rate": b, "patients_copied": b}})
        rules = {r.rule: r for r in plan_audit(train_patients=50, holdout_patients=20, synthetic=400, policy=pol).rules}
        assert not rules["copy_rate"].decidable and "no synthetic-set size" in rules["copy_rate"].detail
        assert "no number of training patients" in rules["patients_copied"].detail
    assert synthetic_needed(0.02) == 189 and synthetic_needed(0.02, recall_lower=0.92) > 189
