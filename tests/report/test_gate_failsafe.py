"""The gate fails closed on what a hand-edited, foreign or malformed report or policy could slip through (session 18's
review): a leak one attack confirms, a copy rule without a lower bound, a canary audit of another training, a budget
in the wrong TOML table."""
from __future__ import annotations

import json

import pytest

from cmraudit.cli.main import main
from cmraudit.errors import EXIT_GATE_FAILED, EXIT_USAGE, ConfigError
from cmraudit.report import compute_verdicts, evaluate_gate, write_report
from cmraudit.report.policy import policy_from_dict
from cmraudit.report.schema import report_problems
from .report_fixtures import est, make_report, variant

DP1 = {"epsilon": 1.0, "delta": 1e-5, "accountant": "prv"}


def _rule(rep, name, policy=None):
    return {r.rule: r for r in evaluate_gate(rep, policy).rules}[name]


def _set_auc(rep, attack, e):
    rep["privacy"]["mia"][attack]["patient"]["auc"] = e


def test_a_leak_one_attack_confirms_is_a_fail_not_inconclusive():
    # domias: CI lower 0.9 > budget 0.75 (a leak with 95 % confidence); gan_leaks: a wider interval with the larger
    # upper bound. The verdict must be "fail" and name domias, whatever the other attack's interval.
    rep = variant(make_report("holdout"), lambda r: (_set_auc(r, "domias", est(0.95, 0.9, 0.99, 40)),
                                                     _set_auc(r, "gan_leaks", est(0.77, 0.54, 1.0, 40))))
    r = _rule(rep, "mia_auc")
    assert (r.status, r.verdict, r.lower, r.hint) == ("fail", "fail", 0.9, None)
    assert r.where == "privacy.mia.domias.patient.auc" and "95 % confidence" in r.reason
    v = compute_verdicts(rep)
    assert v["checks"]["membership_inference"]["verdict"] == "fail" and v["overall"] == "fail"
    # straddling intervals only: still inconclusive, judged on the largest upper bound
    straddle = variant(make_report("holdout"), lambda r: _set_auc(r, "gan_leaks", est(0.77, 0.54, 1.0, 40)))
    r2 = _rule(straddle, "mia_auc")
    assert (r2.status, r2.verdict, r2.upper) == ("fail", "inconclusive", 1.0)


def test_copy_rule_without_a_lower_bound_fails_closed(tmp_path):
    def null_lower(r):
        r["privacy"]["feature_spaces"]["registered"]["copy_detection"]["copy_rate"] = {
            "value": 0.5, "ci": [None, 1.0], "n": 12, "unit": "slice"}

    rep = variant(make_report("holdout"), null_lower)
    pilot = policy_from_dict({"rules": {"copy_rate": 1.0, "mia_auc": 1.0}})  # every upper bound within budget
    r = _rule(rep, "copy_rate", pilot)
    assert r.status == "fail" and "no CI lower bound" in r.reason and "cannot be ruled out" in r.reason
    assert not evaluate_gate(rep, pilot).passed
    # the MIA rules need only the upper bound: a null lower bound there is no reason to fail
    rep2 = variant(make_report("holdout"), lambda r: _set_auc(r, "domias", est(0.52, None, 0.6, 40)))
    assert _rule(rep2, "mia_auc").status == "pass"


@pytest.mark.parametrize("claimed, expect", [
    (8.0, "inconclusive"),        # an audit of an ε = 8 training says nothing about this report's ε = 1
    (None, "inconclusive"),       # an audit of a training without DP
    ("1.0", "inconclusive"),      # not a number
    (True, "inconclusive"),
    (1.02, "fail"),               # the same target ε (calibration tolerance): ε̂ = 3 falsifies ε = 1
])
def test_dp_audit_must_audit_the_reports_claim(claimed, expect):
    rep = variant(make_report("holdout"), lambda r: (r["generator"].__setitem__("dp", DP1),
                                                     r.__setitem__("dp_audit", {"epsilon_lower_bound": 3.0,
                                                                                "epsilon_claimed": claimed})))
    r = _rule(rep, "dp_audit")
    assert (r.status, r.verdict) == ("fail", expect), r.reason
    if expect == "inconclusive":
        assert "fail closed" in r.reason


def test_dp_audit_of_another_generator_or_preset_fails_closed():
    """Review (session 21): a `cmraudit dp-audit` of fm at the same ε passed as the audit of a ddpm report."""
    def with_audit(**who):
        return variant(make_report("holdout"), lambda r: (
            r["generator"].__setitem__("dp", DP1),
            r["run"]["config"].__setitem__("preset", "quick"),
            r.__setitem__("dp_audit", {"epsilon_lower_bound": 0.1, "epsilon_claimed": 1.0, **who})))
    name = make_report("holdout")["generator"]["name"]
    assert _rule(with_audit(generator=name, preset="quick"), "dp_audit").status == "pass"
    assert _rule(with_audit(), "dp_audit").status == "pass"  # a block without them (run --dp-audit-canaries)
    for who in ({"generator": name + "-other"}, {"preset": "micro"}):
        r = _rule(with_audit(**who), "dp_audit")
        assert (r.status, r.verdict) == ("fail", "inconclusive") and "same configuration" in r.reason, r.reason


def test_epsilon_rule_fails_closed_on_a_void_delta():
    """Review (session 21): epsilon 1 with delta 0.9 passed an epsilon budget of 1."""
    pol = policy_from_dict({"rules": {"epsilon": 1.0}})
    ok = variant(make_report("holdout"), lambda r: r["generator"].__setitem__("dp", DP1))
    assert _rule(ok, "epsilon", pol).status == "pass"
    n = ok["data"]["train"]["patients"]
    for delta in (0.9, 1 / n):
        rep = variant(ok, lambda r: r["generator"]["dp"].__setitem__("delta", delta))
        r = _rule(rep, "epsilon", pol)
        assert (r.status, r.verdict) == ("fail", "inconclusive") and "delta" in r.reason, r.reason


def test_impossible_or_unmeasured_estimates_never_pass():
    """Review (session 21): a negative copy rate, an AUC of -0.7, and a copy rate with a null value (nothing measured)
    under an interval of [0, 0] were schema-valid and passed their rules."""
    def copy_rate(e):
        return lambda r: r["privacy"]["feature_spaces"]["registered"]["copy_detection"].__setitem__("copy_rate", e)
    for bad in (copy_rate(est(-0.3, -0.5, -0.1, 8)), lambda r: _set_auc(r, "domias", est(-0.7, -1.0, -0.5, 7)),
                copy_rate(est(0.5, 0.0, 1.2, 8)), lambda r: r["utility"]["regimes"]["synthetic"]["dice"].__setitem__(
                    "LV", est(1.3, 1.2, 1.4, 8))):
        problems = report_problems(variant(make_report("holdout"), bad))
        assert any("outside [0, 1]" in p for p in problems), problems
    pilot = policy_from_dict({"rules": {"copy_rate": 1.0, "mia_auc": 1.0}})
    unmeasured = variant(make_report("holdout"), copy_rate({"value": None, "ci": [0, 0], "n": 0, "unit": "slice"}))
    assert report_problems(unmeasured) == []
    r = _rule(unmeasured, "copy_rate", pilot)
    assert (r.status, r.verdict) == ("fail", "inconclusive") and "no value" in r.reason, r.reason
    assert evaluate_gate(make_report("holdout"), pilot).passed  # the untouched report passes this loose policy


def test_dp_audit_unbounded_lower_bound_falsifies_and_no_claim_passes():
    # `cmraudit dp-audit` writes null for an unbounded ε̂ (every guess right): the strongest falsification
    rep = variant(make_report("holdout"), lambda r: (r["generator"].__setitem__("dp", DP1),
                                                     r.__setitem__("dp_audit", {"epsilon_lower_bound": None,
                                                                                "epsilon_claimed": 1.0})))
    r = _rule(rep, "dp_audit")
    assert (r.status, r.verdict, r.value) == ("fail", "fail", None) and "unbounded" in r.reason
    json.dumps(compute_verdicts(rep))  # stays valid JSON (no infinity)
    no_dp = variant(make_report("holdout"), lambda r: r.__setitem__("dp_audit", {"epsilon_lower_bound": 3.0,
                                                                                "epsilon_claimed": None}))
    assert _rule(no_dp, "dp_audit").status == "pass"  # no DP on either side: no claim to falsify
    bad = variant(rep, lambda r: r["dp_audit"].__setitem__("epsilon_lower_bound", -1))
    assert _rule(bad, "dp_audit").verdict == "inconclusive"


def test_gate_refuses_to_replace_a_reports_dp_audit_and_reads_only_valid_audit_files(tmp_path, capsys):
    rep = variant(make_report("holdout"), lambda r: (r["generator"].__setitem__("dp", DP1),
                                                     r.__setitem__("dp_audit", {"epsilon_lower_bound": 3.0,
                                                                                "epsilon_claimed": 1.0})))
    write_report(tmp_path / "run", rep)
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps({"dp_audit": {"epsilon_lower_bound": 0.0, "epsilon_claimed": 1.0}}))
    assert main(["gate", str(tmp_path / "run"), "--dp-audit", str(audit)]) == EXIT_USAGE
    assert "already holds a dp_audit block" in capsys.readouterr().err
    clean = variant(rep, lambda r: r.pop("dp_audit"))
    write_report(tmp_path / "clean", clean)
    audit.write_text('{"dp_audit": {"epsilon_lower_bound": 3.0, "epsilon_claimed": Infinity}}')
    rc = main(["gate", str(tmp_path / "clean"), "--dp-audit", str(audit)])
    err = capsys.readouterr().err
    assert rc == 4 and str(audit) in err and "Infinity" in err


def test_policy_table_holds_only_name_and_description():
    p = policy_from_dict({"policy": {"name": "pilot", "description": "what a quick run can pass"}})
    assert p.to_dict()["name"] == "pilot"
    for bad in ({"policy": {"copy_rate": 0.001}}, {"policy": {"rules": {"copy_rate": 0.001}}},
                {"policy": {"name": 3}}, {"policy": "x"}):
        with pytest.raises(ConfigError, match=r"policy"):
            policy_from_dict(bad)
    with pytest.raises(ConfigError, match=r"budgets go under \[rules\]"):
        policy_from_dict({"policy": {"copy_rate": 0.001}})


def test_schema_refuses_negative_epsilon_huge_integers_and_bad_audit_blocks(tmp_path):
    def edit(r):
        r["generator"]["dp"] = {"epsilon": -1.0, "delta": 1e-5, "accountant": "prv"}
        r["privacy"]["feature_spaces"]["registered"]["copy_detection"]["copy_rate"]["ci"][1] = 10 ** 400
        r["dp_audit"] = {"epsilon_lower_bound": "3", "epsilon_claimed": 1.0}

    probs = " | ".join(report_problems(variant(make_report("holdout"), edit)))
    assert "generator.dp.epsilon: expected epsilon >= 0" in probs
    assert "copy_rate.ci[1]" in probs and "finite number" in probs
    assert "dp_audit.epsilon_lower_bound" in probs
    rep = variant(make_report("holdout"), lambda r: r["privacy"]["feature_spaces"]["registered"]["copy_detection"]
                  ["copy_rate"]["ci"].__setitem__(1, 10 ** 400))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.json").write_text(json.dumps(rep))
    assert main(["gate", str(tmp_path / "r")]) == EXIT_USAGE  # a schema error (exit 2), not an internal error


def test_a_policy_that_checks_nothing_says_so(tmp_path, capsys):
    (tmp_path / "off.toml").write_text("[rules]\n" + "".join(
        f"{k} = false\n" for k in ("copy_rate", "patients_copied", "mia_auc", "mia_tpr_at_1pct_fpr", "epsilon",
                                   "dp_audit")))
    write_report(tmp_path / "run", make_report("copycat"))
    assert main(["gate", str(tmp_path / "run"), "--policy", str(tmp_path / "off.toml")]) == 0
    assert "every rule is switched off" in capsys.readouterr().err
    assert EXIT_GATE_FAILED == 1


@pytest.mark.parametrize("path, value", [
    ("verdicts/rules/copy_rate", "x"), ("verdicts/rules", [1]), ("verdicts/policy", "x"), ("data/test", "x"),
    ("run/data_fingerprints", ["a"]), ("generator/training", [1]), ("fidelity/distribution", [1]),
    ("utility/regimes", [1]), ("privacy/mia/domias/patient/roc", {"fpr": ["a"], "tpr": ["b"]}),
])
def test_card_and_report_refuse_malformed_fields_instead_of_crashing(tmp_path, capsys, path, value):
    """Review (session 21): each of these passed the schema and crashed `card` or `report` (exit 5, no file named)."""
    from .report_fixtures import make_run_dir

    run, _, _ = make_run_dir(tmp_path / "run")
    rep = json.loads((run / "report.json").read_text())
    node, keys = rep, path.split("/")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    (run / "report.json").write_text(json.dumps(rep))
    for argv in (["card", str(run), "--out", str(tmp_path / "card.md")],
                 ["report", str(run), "--out", str(tmp_path / "r.html")]):
        assert main(["-q", *argv]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "report.json" in err and path.split("/")[-1] in err and "internal error" not in err, err


def test_outputs_never_go_inside_the_run_or_audit_they_read(tmp_path, capsys):
    """Review (session 21): `gate RUN/report.json --junit RUN/junit.xml` and `compare RUN/report.json --out RUN/cmp`
    wrote into the run folder (refused when RUN itself was given), and --junit could go inside the --dp-audit folder."""
    from .report_fixtures import make_run_dir

    from cmraudit.io_guard import write_marker

    run, _, _ = make_run_dir(tmp_path / "run")
    write_marker(run, "run")  # as `cmraudit run` leaves it
    dpa = tmp_path / "dpa"
    dpa.mkdir()
    (dpa / "dp_audit.json").write_text(json.dumps({"epsilon_lower_bound": 0.1, "epsilon_claimed": None}))
    before = sorted(p.name for p in run.iterdir())
    for argv in (["gate", str(run / "report.json"), "--junit", str(run / "junit.xml")],
                 ["compare", str(run / "report.json"), "--out", str(run / "cmp")],
                 ["gate", str(run), "--dp-audit", str(dpa), "--junit", str(dpa / "junit.xml")]):
        assert main(["-q", *argv]) == EXIT_USAGE, argv
        assert "inside the input" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before
    assert sorted(p.name for p in dpa.iterdir()) == ["dp_audit.json"]
    assert main(["-q", "gate", str(run / "report.json"), "--junit", str(tmp_path / "junit.xml")]) in (0, 1)
