"""Plan an audit before training: what it can detect and which gate rules it can decide.

``plan_audit(train_patients=N, holdout_patients=M, synthetic=K)`` answers, from the sizes alone:

* the **minimum detectable copy rate**: the smallest share of copied synthetic slices that makes
  the copy-rate interval exclude 0 with 80 % probability, assuming the registered search's recall
  self-check finds all its planted copies (its Wilson lower bound) and a false-flag bound at the
  configured ``copy_alpha`` (the worst case the threshold allows; real audits are usually below);
* per gate rule of the policy: **decidable** (a clean generator passes with ≈ 95 % probability at
  these sizes) or **underpowered**, with the size that rule needs.

The same size formulas give the gate's "underpowered" hints, so plan and gate agree.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .estimates import (  # noqa: F401 - the size formulas live beside the intervals; re-exported here
    auc_half_width,
    auc_pass_bound,
    auc_patients_needed,
    synthetic_needed,
    wilson_ci,
)
from .privacy.copy_search import min_detectable_rate
from .report.policy import default_policy


@dataclass(frozen=True)
class RulePlan:
    rule: str
    budget: float | None
    decidable: bool | None  # None: rule off
    detail: str


@dataclass(frozen=True)
class AuditPlan:
    train_patients: int
    holdout_patients: int
    synthetic: int
    min_detectable_copy_rate: float | None
    assumptions: dict
    rules: list[RulePlan] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def plan_audit(*, train_patients: int, holdout_patients: int, synthetic: int, policy=None, copy_alpha: float = 1e-3,
               recall_copies: int = 44, power: float = 0.8, confidence: float = 0.95) -> AuditPlan:
    """See the module docstring. ``policy``: a :class:`cmraudit.report.policy.Policy` (default policy when None)."""
    policy = policy or default_policy()
    n, N, M = int(synthetic), int(train_patients), int(holdout_patients)
    r_lo = wilson_ci(recall_copies, recall_copies, confidence=confidence)[0]
    mdr = min_detectable_rate(n, recall=1.0, fpr=copy_alpha, fpr_upper=copy_alpha, power=power, confidence=confidence)
    zero_upper = wilson_ci(0, n, confidence=confidence)[1] / r_lo
    rules: list[RulePlan] = []
    for rule, budget in policy.rules.items():
        if budget is None:
            rules.append(RulePlan(rule, None, None, "off in this policy"))
        elif rule == "copy_rate":
            ok = bool(zero_upper <= budget)
            need = synthetic_needed(budget, recall_lower=r_lo, confidence=confidence)
            rules.append(RulePlan(rule, budget, ok, f"zero flags give an upper bound of {zero_upper:.3g}"
                                  + ("" if ok else f"; needs >= {need} synthetic slices" if need is not None
                                     else "; no synthetic-set size reaches a budget this small")))
        elif rule == "patients_copied":
            up = min(1.0, zero_upper * n / max(N, 1))
            ok = bool(up <= budget)
            need_n = float(zero_upper) * n / budget if budget > 0 else math.inf  # training patients for this budget
            rules.append(
                RulePlan(
                    rule,
                    budget,
                    ok,
                    f"zero flags give an upper bound of {up:.3g} "
                    f"(up to {zero_upper * n:.1f} undetected copies over {N} training patients)"
                    + (
                        ""
                        if ok
                        else f"; needs >= {math.ceil(need_n)} training patients at this synthetic size"
                        if need_n < 1e18
                        else "; no number of training patients reaches a budget this small"
                    ),
                )
            )
        elif rule == "mia_auc":
            pass_at = auc_pass_bound(N, M, confidence=confidence)
            ok = bool(pass_at <= budget)
            need = None if ok else auc_patients_needed(N, M, budget, confidence=confidence)
            rules.append(RulePlan(rule, budget, ok, f"a chance-level attack passes with 95 % probability while its AUC "
                                  f"CI upper bound stays under {pass_at:.3g}"
                                  + ("" if ok or need is None else f"; needs about {need[0]} / {need[1]} patients")))
        elif rule == "mia_tpr_at_1pct_fpr":
            ok = bool(M >= 100)
            rules.append(RulePlan(rule, budget, ok, "TPR at 1 % FPR needs >= 100 non-member (holdout) patients"
                                  + ("" if ok else f"; has {M}")))
        elif rule == "epsilon":
            rules.append(RulePlan(rule, budget, True, "read from the DP accountant; no sample-size requirement"))
        elif rule == "dp_audit":
            rules.append(RulePlan(rule, budget, True, "checked when a canary DP audit is attached (run "
                                  "--dp-audit-canaries M, gate --dp-audit FILE); its lower bound holds at 95 % "
                                  "confidence, so a correct DP claim passes with >= 95 % probability"))
    return AuditPlan(train_patients=N, holdout_patients=M, synthetic=n, min_detectable_copy_rate=mdr,
                     assumptions={"copy_alpha": copy_alpha, "recall_lower": r_lo, "recall_copies": recall_copies,
                                  "power": power, "confidence": confidence},
                     rules=rules)


def format_plan(p: AuditPlan) -> str:
    mdr = (
        "none (too few synthetic slices)"
        if p.min_detectable_copy_rate is None
        else f"{100 * p.min_detectable_copy_rate:.2f} %"
    )
    lines = [
        f"audit plan: {p.train_patients} train / {p.holdout_patients} holdout patients, {p.synthetic} synthetic slices",
        f"minimum detectable copy rate (80 % power): {mdr}",
        "rules:",
    ]
    for r in p.rules:
        state = "off" if r.decidable is None else "decidable" if r.decidable else "UNDERPOWERED"
        budget = "" if r.budget is None else f" <= {r.budget:g}"
        lines.append(f"  {r.rule}{budget}: {state} - {r.detail}")
    return "\n".join(lines)
