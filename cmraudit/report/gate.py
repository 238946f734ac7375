"""The privacy gate and the report verdicts (docs/design.md § 8).

Each rule compares a 95 % CI *upper* bound (not a point estimate) with a budget. A metric
that is missing, skipped, or has no upper bound fails its rule (fail closed). The same rule
evaluation gives the three-way verdicts stored in report.json:

* ``pass`` — the CI upper bound is within budget;
* ``fail`` — the CI lower bound is above budget (the generator leaks, with 95 % confidence);
* ``inconclusive`` — the interval straddles the budget, or the metric was not computed.

The gate itself is two-way: anything but ``pass`` fails it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .gate_extract import _candidates, _skip_reason
from .junit import write_junit  # noqa: F401 - re-exported
from .policy import DETECTION_RULES, Policy, default_policy
from .power import _TPR_HINT, _power_hint, wilson_min_n  # noqa: F401 - re-exported
from .schema import _finite, _is_num, dp_audit_problems

_GROUPS = {
    "copy_detection": ("copy_rate", "patients_copied"),
    "membership_inference": ("mia_auc", "mia_tpr_at_1pct_fpr"),
    "differential_privacy": ("epsilon", "dp_audit"),
}


@dataclass(frozen=True)
class RuleResult:
    """One gate rule: the compared CI upper bound, where it came from, and the outcome.

    ``status``: ``pass`` / ``fail`` / ``off`` (rule switched off in the policy).
    ``verdict``: ``pass`` / ``fail`` / ``inconclusive`` (see module docstring) or ``not_required``.
    """

    rule: str
    budget: float | None
    status: str
    verdict: str
    reason: str
    upper: float | None = None
    value: float | None = None
    lower: float | None = None
    where: str | None = None
    unit: str | None = None
    hint: str | None = None  # why the rule cannot pass at this sample size, and what would let it (power)

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    @property
    def short_reason(self) -> str:
        """The reason cut to one readable line (for tables); the full text stays in ``reason``."""
        text = self.reason if len(self.reason) <= 140 else self.reason[:137].rstrip() + "…"
        return text if self.hint is None else f"{text} — {self.hint}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    """All rule results of one report under one policy; ``passed`` iff no enabled rule failed."""

    rules: tuple[RuleResult, ...]
    policy: dict = field(default_factory=dict)
    report: str | None = None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def failed_rules(self) -> list[RuleResult]:
        return [r for r in self.rules if r.status == "fail"]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "report": self.report,
            "policy": self.policy,
            "rules": [r.to_dict() for r in self.rules],
        }


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def evaluate_rule(report: dict, rule: str, policy: Policy) -> RuleResult:
    budget = policy.rules.get(rule)
    if rule == "epsilon":
        return _epsilon_rule(report, budget)
    if rule == "dp_audit":
        return _dp_audit_rule(report, budget)
    if budget is None:
        return RuleResult(rule, None, "off", "not_required", "rule switched off by the policy")
    cands, failures, notes = _candidates(report, rule, policy)
    note = f"; {', '.join(notes)}" if notes else ""
    if failures:
        hint = _TPR_HINT if any("unsupported: TPR" in f for f in failures) else None
        return RuleResult(rule, budget, "fail", "inconclusive", "fail closed: " + "; ".join(failures) + note, hint=hint)
    if not cands:
        what = "feature space" if rule in ("copy_rate", "patients_copied") else "attack"
        return RuleResult(rule, budget, "fail", "inconclusive", f"fail closed: no {what} reported this metric{note}")
    where, est = max(cands, key=lambda c: c[1]["ci"][1])
    upper = float(est["ci"][1])
    lower = est["ci"][0]
    value = est.get("value")
    lows = [(w, e) for w, e in cands if _is_num(e["ci"][0])]
    if rule in DETECTION_RULES:
        unknown = [w for w, e in cands if not _is_num(e["ci"][0])]
        if unknown:  # "any copy detected fails" needs the lower bound: without it copies cannot be ruled out
            return RuleResult(rule, budget, "fail", "inconclusive",
                              f"fail closed: {', '.join(unknown)} has no CI lower bound, so detected copies cannot be "
                              f"ruled out{note}", upper, value, None, unknown[0], est.get("unit"))
        hit = [(w, e) for w, e in cands if e["ci"][0] > 1e-9]
        if hit:  # a copy detected with 95 % confidence is a leak whatever the budget
            w, e = max(hit, key=lambda c: c[1]["ci"][0])
            reason = (f"copies detected: CI lower {_fmt(e['ci'][0])} > 0 at {w} (point {_fmt(e.get('value'))}, "
                      f"CI [{_fmt(e['ci'][0])}, {_fmt(e['ci'][1])}]){note}")
            return RuleResult(
                rule, budget, "fail", "fail", reason, float(e["ci"][1]), e.get("value"), e["ci"][0], w, e.get("unit")
            )
    if lows and rule not in DETECTION_RULES:  # the attack with the largest lower bound decides "fail"
        w, e = max(lows, key=lambda c: c[1]["ci"][0])
        if e["ci"][0] > budget:  # a leak shown with 95 % confidence by one attack, whatever the others' intervals
            reason = (f"CI lower {_fmt(e['ci'][0])} > budget {_fmt(budget)} at {w} (point {_fmt(e.get('value'))}, "
                      f"CI [{_fmt(e['ci'][0])}, {_fmt(e['ci'][1])}]): a leak with 95 % confidence{note}")
            return RuleResult(rule, budget, "fail", "fail", reason, float(e["ci"][1]), e.get("value"),
                              e["ci"][0], w, e.get("unit"))
    ok = upper <= budget
    if ok:
        verdict = "pass"
    elif lower is not None and lower > budget:
        verdict = "fail"
    else:
        verdict = "inconclusive"
    cmp = "<=" if ok else ">"
    reason = (
        f"CI upper {_fmt(upper)} {cmp} budget {_fmt(budget)} at {where} "
        f"(point {_fmt(value)}, CI [{_fmt(lower)}, {_fmt(upper)}]){note}"
    )
    hint = None if ok else _power_hint(rule, est, budget, report=report, where=where)
    return RuleResult(
        rule, budget, "pass" if ok else "fail", verdict, reason, upper, value, lower, where, est.get("unit"), hint
    )


def _epsilon_rule(report: dict, budget: float | None) -> RuleResult:
    gen = report.get("generator") if isinstance(report, dict) else None
    dp = gen.get("dp", "missing") if isinstance(gen, dict) else "missing"
    if budget is None:
        if isinstance(dp, dict) and isinstance(dp.get("epsilon"), (int, float)):
            return RuleResult(
                "epsilon",
                None,
                "off",
                "not_required",
                f"no epsilon budget in the policy (trained with epsilon {_fmt(dp['epsilon'])})",
                value=float(dp["epsilon"]),
            )
        return RuleResult(
            "epsilon",
            None,
            "off",
            "not_required",
            "no epsilon budget in the policy (trained without differential privacy)",
        )
    if dp == "missing":
        return RuleResult(
            "epsilon", budget, "fail", "inconclusive", "fail closed: generator.dp missing from the report"
        )
    if dp is None:
        return RuleResult(
            "epsilon",
            budget,
            "fail",
            "fail",
            "fail closed: the policy requires DP but generator.dp is null (trained without differential privacy)",
            where="generator.dp",
        )
    eps = dp.get("epsilon") if isinstance(dp, dict) else None
    if not isinstance(eps, (int, float)) or isinstance(eps, bool):
        return RuleResult(
            "epsilon",
            budget,
            "fail",
            "inconclusive",
            "fail closed: generator.dp.epsilon missing or not a number",
            where="generator.dp.epsilon",
        )
    void = _void_delta(report, dp.get("delta"))
    if void is not None:
        return RuleResult("epsilon", budget, "fail", "inconclusive", f"fail closed: {void}", where="generator.dp.delta")
    ok = eps <= budget
    return RuleResult(
        "epsilon",
        budget,
        "pass" if ok else "fail",
        "pass" if ok else "fail",
        f"epsilon {_fmt(eps)} {'<=' if ok else '>'} budget {_fmt(budget)} (delta {dp.get('delta')}, "
        f"{dp.get('accountant')} accountant)",
        upper=float(eps),
        value=float(eps),
        where="generator.dp.epsilon",
    )


def _void_delta(report: dict, delta) -> str | None:
    """Why generator.dp.delta voids the guarantee (None when it does not): not a number in [0, 1), or at least
    1 / (training patients), which would allow releasing one patient's data outright (``run`` refuses such a δ)."""
    if not _finite(delta) or not 0 <= delta < 1:
        return f"generator.dp.delta is {delta!r}, not a number in [0, 1)"
    data = report.get("data") if isinstance(report, dict) else None
    train = data.get("train") if isinstance(data, dict) else None
    n = train.get("patients") if isinstance(train, dict) else None
    if _finite(n) and n >= 1 and delta >= 1 / n:
        return (f"generator.dp.delta {delta:g} >= 1 / {int(n)} training patients: such a delta allows releasing one "
                "patient's data outright, so epsilon guarantees nothing")
    return None


def _dp_audit_rule(report: dict, budget: float | None) -> RuleResult:
    """A canary DP audit (cmraudit dp-audit) falsifies the DP claim when its lower bound ε̂ > budget × claimed ε."""
    block = report.get("dp_audit") if isinstance(report, dict) else None
    if budget is None:
        return RuleResult("dp_audit", None, "off", "not_required", "rule switched off by the policy")
    if block is None:
        return RuleResult("dp_audit", budget, "off", "not_required",
                          "no canary DP audit attached (cmraudit dp-audit, then gate --dp-audit FILE)")
    why = _skip_reason(block)
    if why is not None:
        return RuleResult("dp_audit", budget, "fail", "inconclusive", f"fail closed: dp_audit skipped ({why})")
    problems = dp_audit_problems(block)  # ε̂ a number >= 0 or null, the claim a number >= 0 or null (report schema)
    if problems:
        return RuleResult("dp_audit", budget, "fail", "inconclusive", "fail closed: " + "; ".join(problems))
    eps_hat = block["epsilon_lower_bound"]  # null: unbounded (every guess right), as `cmraudit dp-audit` writes
    value = None if eps_hat is None else float(eps_hat)
    shown = "unbounded" if value is None else _fmt(value)
    claimed, mismatch = _audited_claim(report, block)
    if mismatch is not None:
        return RuleResult("dp_audit", budget, "fail", "inconclusive", f"fail closed: {mismatch}",
                          value=value, where="dp_audit.epsilon_claimed")
    if claimed is None:
        return RuleResult("dp_audit", budget, "pass", "pass", f"no DP claim to falsify (lower bound {shown})",
                          value=value, where="dp_audit.epsilon_lower_bound")
    limit = budget * float(claimed)
    ok = value is not None and value <= limit
    reason = (
        f"canary lower bound {shown} {'<=' if ok else '>'} {_fmt(budget)} x claimed epsilon {_fmt(claimed)}"
        + ("" if ok else ": the DP claim is falsified")
    )
    return RuleResult("dp_audit", budget, "pass" if ok else "fail", "pass" if ok else "fail", reason,
                      upper=float(limit), value=value, where="dp_audit.epsilon_lower_bound")


_CLAIM_RTOL = 0.05  # two trainings calibrated to one target ε (with and without canaries) agree to this


def _audited_claim(report: dict, block: dict) -> tuple[float | None, str | None]:
    """The ε the canary audit tests (None: no DP claim) and, when the audit cannot speak for this report, why.

    The audit's own ``epsilon_claimed`` (null: trained without DP; its type checked by the caller) must match
    the report's ``generator.dp.epsilon`` to ``_CLAIM_RTOL``: an audit of another training (another ε, or DP on one
    side only) neither confirms nor falsifies this report's claim. A block without the key takes the report's claim.
    """
    gen = report.get("generator") if isinstance(report, dict) else None
    other = _other_training(report, gen, block)
    if other is not None:
        return None, other
    dp = gen.get("dp", "missing") if isinstance(gen, dict) else "missing"
    report_eps = dp.get("epsilon") if isinstance(dp, dict) else None
    if isinstance(dp, dict) and not (_finite(report_eps) and report_eps >= 0):
        return None, f"generator.dp.epsilon is {report_eps!r}, not a finite number >= 0"
    if "epsilon_claimed" not in block:
        return (None if dp == "missing" else report_eps), None
    claimed = block["epsilon_claimed"]  # a finite number >= 0 or null: checked by dp_audit_problems
    if dp == "missing":
        return claimed, None
    same = (claimed is None and report_eps is None) or (
        claimed is not None and report_eps is not None and abs(claimed - report_eps) <= _CLAIM_RTOL * report_eps)
    if not same:
        def say(e):
            return "no DP" if e is None else f"epsilon {_fmt(e)}"
        return None, (f"the canary audit tested a training with {say(claimed)}, but this report claims "
                      f"{say(report_eps)}: attach the audit of the same configuration (cmraudit dp-audit)")
    return claimed, None


def _other_training(report: dict, gen: object, block: dict) -> str | None:
    """Why a canary audit block describes another training than the report's (None when it may speak for it): the
    generator and preset ``cmraudit dp-audit`` records must be the report's own where both are given."""
    run = report.get("run") if isinstance(report, dict) else None
    config = run.get("config") if isinstance(run, dict) else None
    have = {"generator": gen.get("name") if isinstance(gen, dict) else None,
            "preset": config.get("preset") if isinstance(config, dict) else None}
    for key, mine in have.items():
        theirs = block.get(key)
        if isinstance(theirs, str) and isinstance(mine, str) and theirs != mine:
            return (f"the canary audit trained {key} {theirs!r}, this report's {key} is {mine!r}: attach the audit "
                    "of the same configuration (cmraudit dp-audit)")
    return None


def evaluate_gate(report: dict, policy: Policy | None = None, *, source: str | None = None) -> GateResult:
    """Evaluate every rule of ``policy`` (default policy when None) on a report dict."""
    policy = policy or default_policy()
    rules = tuple(evaluate_rule(report, rule, policy) for rule in policy.rules)
    return GateResult(rules=rules, policy=policy.to_dict(), report=source)


def compute_verdicts(report: dict, policy: Policy | None = None) -> dict:
    """The ``verdicts`` section of report.json from its privacy section and generator.dp.

    ``{"overall": v, "policy": {...}, "checks": {group: {"verdict": v, "reason": str}},
    "rules": {rule: RuleResult.to_dict()}}`` with v in pass / fail / inconclusive / not_required.
    """
    result = evaluate_gate(report, policy)
    by_rule = {r.rule: r for r in result.rules}
    checks: dict[str, dict] = {}
    for group, names in _GROUPS.items():
        rs = [by_rule[n] for n in names if n in by_rule and by_rule[n].verdict != "not_required"]
        if not rs:
            reasons = "; ".join(by_rule[n].reason for n in names if n in by_rule) or "no rule in the policy"
            checks[group] = {"verdict": "not_required", "reason": reasons}
            continue
        vs = [r.verdict for r in rs]
        verdict = "fail" if "fail" in vs else "inconclusive" if "inconclusive" in vs else "pass"
        checks[group] = {"verdict": verdict, "reason": "; ".join(f"{r.rule}: {r.reason}" for r in rs)}
    vs = [c["verdict"] for c in checks.values()]
    overall = (
        "fail"
        if "fail" in vs
        else "inconclusive"
        if "inconclusive" in vs
        else "pass"
        if "pass" in vs
        else "not_required"
    )
    return {
        "overall": overall,
        "policy": result.policy,
        "checks": checks,
        "rules": {r.rule: r.to_dict() for r in result.rules},
    }
