"""Report: versioned report.json schema, HTML report, compare, privacy gate (docs/design.md § 8).

Never imports torch or trains anything: it reads result dictionaries and prepared datasets.
``render_html`` lives in :mod:`cmraudit.report.html` and ``compare_runs`` in
:mod:`cmraudit.report.compare` (they import matplotlib).
"""
from .gate import GateResult, RuleResult, compute_verdicts, evaluate_gate, write_junit
from .io import read_report, write_report
from .policy import DEFAULT_RULES, Policy, default_policy, load_policy
from .schema import SCHEMA_VERSION, report_problems, validate_report

__all__ = [
    "SCHEMA_VERSION", "validate_report", "report_problems", "read_report", "write_report",
    "Policy", "DEFAULT_RULES", "default_policy", "load_policy",
    "GateResult", "RuleResult", "evaluate_gate", "compute_verdicts", "write_junit",
]
