"""Privacy gate: fail closed, CI upper bounds, exit codes, JUnit (issue 8, acceptance 2)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from cmraudit.cli.main import main
from cmraudit.errors import EXIT_GATE_FAILED, EXIT_OK, EXIT_USAGE, ConfigError
from cmraudit.report import compute_verdicts, default_policy, evaluate_gate, load_policy, write_report
from cmraudit.report.policy import policy_from_dict
from .report_fixtures import est, make_report, variant


# every rule on (the default policy switches off the rules a public-dataset-sized audit cannot decide)
FULL = policy_from_dict({"rules": {"patients_copied": 0.05, "mia_tpr_at_1pct_fpr": 0.05}})
FULL_TOML = "[rules]\npatients_copied = 0.05\nmia_tpr_at_1pct_fpr = 0.05\n"


def _run(tmp_path, kind_or_report, *args):
    rep = make_report(kind_or_report) if isinstance(kind_or_report, str) else kind_or_report
    write_report(tmp_path, rep)
    return main(["gate", str(tmp_path / "report.json"), *args])


def test_copycat_fails_and_names_rules(tmp_path, capsys):
    (tmp_path / "full.toml").write_text(FULL_TOML)
    assert _run(tmp_path, "copycat", "--policy", str(tmp_path / "full.toml")) == EXIT_GATE_FAILED
    out = capsys.readouterr()
    for rule in ("copy_rate", "patients_copied", "mia_auc", "mia_tpr_at_1pct_fpr"):
        assert f"rule {rule}" in out.err
    assert "FAIL" in out.out


def test_holdout_passes(tmp_path, capsys):
    assert _run(tmp_path, "holdout") == EXIT_OK
    assert "gate PASSED" in capsys.readouterr().out


def test_skipped_metric_fails_closed(tmp_path, capsys):
    assert _run(tmp_path, "skipped") == EXIT_GATE_FAILED
    err = capsys.readouterr().err
    assert "rule copy_rate" in err and "skipped" in err and "feature extraction failed" in err
    assert "rule mia_auc" not in err  # only the skipped metric's rule fails


def test_rule_uses_ci_upper_not_point_estimate():
    # point estimate 0.004 is under budget 0.02 but the CI upper bound 0.03 is not
    rep = variant(
        make_report("holdout"),
        lambda r: r["privacy"]["feature_spaces"]["registered"]["copy_detection"].__setitem__(
            "copy_rate", est(0.004, 0.0, 0.03, 100, "slice")
        ),
    )
    res = {r.rule: r for r in evaluate_gate(rep).rules}
    assert res["copy_rate"].status == "fail" and res["copy_rate"].upper == 0.03
    assert res["copy_rate"].verdict == "inconclusive"  # interval straddles the budget
    assert res["copy_rate"].where.endswith("registered.copy_detection.copy_rate")


def test_detected_copies_fail_whatever_the_budget():
    # CI [0.001, 0.012]: within budget 0.02, but it excludes 0: a copy was detected with 95 % confidence
    rep = variant(
        make_report("holdout"),
        lambda r: r["privacy"]["feature_spaces"]["registered"]["copy_detection"].__setitem__(
            "copy_rate", est(0.005, 0.001, 0.012, 400, "slice")
        ),
    )
    res = {r.rule: r for r in evaluate_gate(rep).rules}
    assert (
        res["copy_rate"].status == "fail"
        and res["copy_rate"].verdict == "fail"
        and "copies detected" in res["copy_rate"].reason
    )
    # the default scope reads the registered space only: flags in the non-invariant pixel space do not decide
    rep2 = variant(
        make_report("holdout"),
        lambda r: r["privacy"]["feature_spaces"]["pixel"]["copy_detection"].__setitem__(
            "copy_rate", est(0.005, 0.001, 0.012, 400, "slice")
        ),
    )
    assert {r.rule: r for r in evaluate_gate(rep2).rules}["copy_rate"].status == "pass"


def test_max_over_feature_spaces_and_attacks():
    rep = make_report("holdout")
    rep["privacy"]["feature_spaces"]["domain"]["copy_detection"]["copy_rate"] = est(0.0, 0.0, 0.015, 100, "slice")
    rep["privacy"]["mia"]["domias"]["patient"]["auc"] = est(0.55, 0.5, 0.59, 40)
    res = {r.rule: r for r in evaluate_gate(rep, policy_from_dict({"scope": {"feature_spaces": []}})).rules}
    assert res["copy_rate"].upper == 0.015 and "domain" in res["copy_rate"].where
    assert res["mia_auc"].upper == 0.59 and "domias" in res["mia_auc"].where


@pytest.mark.parametrize(
    "mutate, rule, needle",
    [
        (
            lambda r: r.__setitem__("privacy", {"status": "skipped", "reason": "--no-privacy"}),
            "copy_rate",
            "--no-privacy",
        ),
        (
            lambda r: r["privacy"]["mia"]["gan_leaks"]["patient"].__setitem__(
                "auc", {"status": "skipped", "reason": "too few patients"}
            ),
            "mia_auc",
            "too few patients",
        ),
        (
            lambda r: r["privacy"]["mia"]["gan_leaks"]["patient"]["tpr_at_1pct_fpr"].__setitem__("ci", None),
            "mia_tpr_at_1pct_fpr",
            "no CI upper bound",
        ),
        (
            lambda r: r["privacy"].__setitem__("mia", {"a": {"status": "skipped", "reason": "x"}}),
            "mia_auc",
            "no attack",
        ),
        (
            lambda r: r["privacy"]["feature_spaces"]["registered"].__setitem__(
                "copy_detection", {"status": "skipped", "reason": "oom"}
            ),
            "patients_copied",
            "oom",
        ),
        (lambda r: r["privacy"]["feature_spaces"].pop("registered"), "copy_rate", "registered missing"),
        (
            lambda r: r["privacy"]["feature_spaces"].__setitem__(
                "registered", {"status": "skipped", "reason": "switched off"}
            ),
            "copy_rate",
            "registered skipped (switched off)",
        ),
    ],
)
def test_missing_or_skipped_fails_closed(mutate, rule, needle):
    res = {r.rule: r for r in evaluate_gate(variant(make_report("holdout"), mutate), FULL).rules}
    assert res[rule].status == "fail"
    assert needle in res[rule].reason


def test_scope_requires_listed_attack():
    pol = policy_from_dict({"scope": {"attacks": ["gan_leaks", "whitebox_loss"]}})
    res = {r.rule: r for r in evaluate_gate(make_report("holdout"), pol).rules}
    assert res["mia_auc"].status == "fail" and "whitebox_loss skipped" in res["mia_auc"].reason
    # default scope ignores the skipped (not applicable) attack
    assert {r.rule: r for r in evaluate_gate(make_report("holdout")).rules}["mia_auc"].status == "pass"


def test_epsilon_rule(tmp_path, capsys):
    policy = tmp_path / "p.toml"
    policy.write_text("[rules]\nepsilon = 8.0\n")
    # no DP in the report -> fail closed
    assert _run(tmp_path, "holdout", "--policy", str(policy)) == EXIT_GATE_FAILED
    assert "generator.dp is null" in capsys.readouterr().err
    dp = {"epsilon": 6.8, "delta": 1e-5, "accountant": "prv"}
    assert (
        _run(
            tmp_path,
            variant(make_report("holdout"), lambda r: r["generator"].__setitem__("dp", dp)),
            "--policy",
            str(policy),
        )
        == EXIT_OK
    )
    dp = {"epsilon": 10.0, "delta": 1e-5, "accountant": "prv"}
    assert (
        _run(
            tmp_path,
            variant(make_report("holdout"), lambda r: r["generator"].__setitem__("dp", dp)),
            "--policy",
            str(policy),
        )
        == EXIT_GATE_FAILED
    )


def test_policy_budgets_change_the_outcome(tmp_path):
    lax = tmp_path / "lax.toml"
    lax.write_text("[rules]\ncopy_rate = 1.0\npatients_copied = 1.0\nmia_auc = 1.0\nmia_tpr_at_1pct_fpr = 1.0\n")
    assert _run(tmp_path, "copycat", "--policy", str(lax)) == EXIT_GATE_FAILED  # detected copies fail any budget
    lax.write_text("[rules]\ncopy_rate = false\npatients_copied = false\nmia_auc = 1.0\nmia_tpr_at_1pct_fpr = 1.0\n")
    assert _run(tmp_path, "copycat", "--policy", str(lax)) == EXIT_OK
    off = tmp_path / "off.toml"
    off.write_text("[rules]\ncopy_rate = false\n")
    assert _run(tmp_path, "skipped", "--policy", str(off)) == EXIT_OK


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[rules]\ncopy_rat = 0.01\n", "unknown rule"),
        ("[rules]\ncopy_rate = 'low'\n", "expected a number"),
        ("[rules]\nmia_auc = 1.5\n", "out of range"),
        ("[scope]\nmia_level = 'voxel'\n", "mia_level"),
        ("[rulez]\n", "unknown section"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_bad_policy_exit_2(tmp_path, capsys, text, needle):
    policy = tmp_path / "p.toml"
    policy.write_text(text)
    assert _run(tmp_path, "holdout", "--policy", str(policy)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert needle in err and str(policy) in err


def test_missing_policy_file_exit_2(tmp_path, capsys):
    assert _run(tmp_path, "holdout", "--policy", str(tmp_path / "none.toml")) == EXIT_USAGE
    with pytest.raises(ConfigError):
        load_policy(tmp_path / "none.toml")


def test_junit(tmp_path):
    junit = tmp_path / "out" / "gate.xml"  # beside the run folder: never inside the run it reads
    assert _run(tmp_path / "run", "copycat", "--junit", str(junit)) == EXIT_GATE_FAILED
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"copy_rate", "patients_copied", "mia_auc", "mia_tpr_at_1pct_fpr", "epsilon", "dp_audit"}
    assert cases["copy_rate"].find("failure") is not None
    assert cases["epsilon"].find("skipped") is not None
    assert suite.get("failures") == "2"  # copy_rate and mia_auc; patients_copied and TPR are off by default
    assert cases["patients_copied"].find("skipped") is not None


def test_junit_stays_well_formed_whatever_the_reasons_hold(tmp_path):
    """Review (session 21): a skipped entry's reason with control characters (schema-valid) made --junit write a
    file ElementTree could not parse."""
    from cmraudit.report import evaluate_gate
    from cmraudit.report.junit import write_junit

    from .report_fixtures import make_report, variant

    rep = variant(make_report("holdout"), lambda r: r["privacy"]["feature_spaces"]["registered"]["copy_detection"]
                  .__setitem__("copy_rate", {"status": "skipped", "reason": "bad\u0001reason\u000b\ud800"}))
    write_junit(evaluate_gate(rep), tmp_path / "g.xml")
    suite = ET.parse(tmp_path / "g.xml").getroot().find("testsuite")
    fails = [c.find("failure") for c in suite.findall("testcase")]
    text = " ".join(f.get("message") for f in fails if f is not None)
    assert "bad\ufffdreason\ufffd\ufffd" in text


def test_example_policy_parses_and_matches_defaults():
    from pathlib import Path

    p = Path(__file__).resolve().parents[2] / "examples" / "ci-gate" / "policy.toml"
    pol = load_policy(p)
    for rule, budget in default_policy().rules.items():
        if budget is not None:
            assert pol.rules[rule] == budget


def test_verdicts_three_way():
    v = compute_verdicts(make_report("copycat"))
    assert v["overall"] == "fail"
    assert v["checks"]["copy_detection"]["verdict"] == "fail"
    assert v["checks"]["membership_inference"]["verdict"] == "fail"
    assert v["checks"]["differential_privacy"]["verdict"] == "not_required"
    assert compute_verdicts(make_report("holdout"))["overall"] == "pass"
    s = compute_verdicts(make_report("skipped"))
    assert s["overall"] == "inconclusive" and s["checks"]["copy_detection"]["verdict"] == "inconclusive"
    json.dumps(v, allow_nan=False)


def test_underpowered_rate_rule_says_how_many_are_needed(tmp_path, capsys):
    """0 copies out of 96 slices: Wilson upper 0.0385 > 0.01, so the rule cannot pass at this n; the gate says
    so and names the n that could (z²(1−b)/b = 380.3 → 381 slices; 73 patients for b = 0.05)."""
    from cmraudit.estimates import wilson_ci
    from cmraudit.report.gate import wilson_min_n

    assert wilson_min_n(0.01) == 381 and wilson_ci(0, 381)[1] <= 0.01 < wilson_ci(0, 380)[1]
    assert wilson_min_n(0.05) == 73 and wilson_ci(0, 73)[1] <= 0.05 < wilson_ci(0, 72)[1]
    zero = {"value": 0.0, "ci": list(wilson_ci(0, 96)), "n": 96, "unit": "slice", "ci_method": "wilson, fpr-corrected"}
    rep = variant(
        make_report("holdout"),
        lambda r: r["privacy"]["feature_spaces"]["registered"]["copy_detection"].__setitem__("copy_rate", zero),
    )
    res = {r.rule: r for r in evaluate_gate(rep).rules}
    # budget 0.02: z²(1 − b)/b = 188.2 → 189 slices (the registered space's recall lower bound divides the budget)
    assert res["copy_rate"].status == "fail" and "at least 189 slices" in res["copy_rate"].hint
    assert res["patients_copied"].hint is None  # a passing rule gets no hint
    powered = dict(zero, ci=list(wilson_ci(2, 400)), n=400, value=0.005)  # fails on its data, not for lack of n
    powered["ci"] = [0.0, powered["ci"][1] + 0.02]
    rep2 = variant(
        rep, lambda r: r["privacy"]["feature_spaces"]["registered"]["copy_detection"].__setitem__("copy_rate", powered)
    )
    assert {r.rule: r for r in evaluate_gate(rep2).rules}["copy_rate"].hint is None
    write_report(tmp_path, rep)
    assert main(["gate", str(tmp_path / "report.json")]) == EXIT_GATE_FAILED
    assert "underpowered" in capsys.readouterr().err


def test_tpr_rule_unsupported_for_few_non_members_gets_a_hint():
    skipped = {
        "status": "skipped",
        "reason": "unsupported: TPR at 0.01 FPR needs at least 100 non-members, have 15 (patient level)",
    }
    rep = variant(
        make_report("holdout"),
        lambda r: [
            r["privacy"]["mia"][a]["patient"].__setitem__("tpr_at_1pct_fpr", skipped) for a in ("gan_leaks", "domias")
        ],
    )
    r = {x.rule: x for x in evaluate_gate(rep, FULL).rules}["mia_tpr_at_1pct_fpr"]
    assert r.status == "fail" and "100 non-member" in r.hint and "mia_tpr_at_1pct_fpr = false" in r.hint


def test_dp_audit_rule_fails_a_falsified_claim(tmp_path, capsys):
    """issue 19: the canary audit's lower bound ε̂ above the claimed ε falsifies the DP claim."""
    import json as _json

    dp = {"epsilon": 1.0, "delta": 1e-5, "accountant": "prv"}
    rep = variant(make_report("holdout"), lambda r: r["generator"].__setitem__("dp", dp))
    assert {r.rule: r for r in evaluate_gate(rep).rules}["dp_audit"].status == "off"  # no audit attached
    falsified = variant(rep, lambda r: r.__setitem__("dp_audit", {"epsilon_lower_bound": 1.63, "epsilon_claimed": 1.0}))
    r = {x.rule: x for x in evaluate_gate(falsified).rules}["dp_audit"]
    assert r.status == "fail" and r.verdict == "fail" and "falsified" in r.reason
    assert compute_verdicts(falsified)["checks"]["differential_privacy"]["verdict"] == "fail"
    held = variant(rep, lambda r: r.__setitem__("dp_audit", {"epsilon_lower_bound": 0.0, "epsilon_claimed": 1.0}))
    assert {x.rule: x for x in evaluate_gate(held).rules}["dp_audit"].status == "pass"
    # the CLI attaches a dp-audit result file
    write_report(tmp_path, rep)
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "dp_audit.json").write_text(_json.dumps(
        {"format": "cmraudit-dp-audit", "dp_audit": {"epsilon_lower_bound": 2.78, "epsilon_claimed": 1.0}}))
    assert main(["gate", str(tmp_path / "report.json"), "--dp-audit", str(tmp_path / "audit")]) == EXIT_GATE_FAILED
    assert "rule dp_audit" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[]")
    assert main(["gate", str(tmp_path / "report.json"), "--dp-audit", str(tmp_path / "bad.json")]) == 4
