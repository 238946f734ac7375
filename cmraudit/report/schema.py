"""The versioned report.json schema (documented field by field in docs/report-schema.md).

A hand-written validator, in the Opacus style: it walks the whole report, collects
every problem with the path of the field, and raises one :class:`ReportSchemaError`
(exit code 2) that names the file and each field. Strict about the top level and the
fields the gate reads; lenient about extra keys inside stage sections (they evolve).

Rules checked everywhere in the tree:

* a dict with a ``value`` key is an *estimate*: ``{"value": x|null, "ci": [lo, hi]|null,
  "n": int >= 0, "unit": "patient"|"slice"}`` (extra keys such as ``ci_method`` allowed);
* a dict with a ``status`` key is a *skipped entry*: ``{"status": "skipped", "reason": "..."}``;
* a metric under a stable key name (``copy_rate``, ``auc``, ``dice`` …) is never a bare
  number: an estimate, a skipped entry, or a mapping of those (e.g. per structure);
* no NaN or infinity anywhere (standard JSON cannot hold them).
"""
from __future__ import annotations

import math
import sys
from typing import Any

from ..errors import ReportSchemaError
from .schema_fields import (  # noqa: F401  (re-exported for the schema's users)
    SCHEMA_VERSION, SUPPORTED_VERSIONS, UNITS, TOP_LEVEL, STAGES, VERDICTS,
    ESTIMATE_KEYS, UNIT_INTERVAL_KEYS, RUN_REQUIRED, SPLIT_REQUIRED, DP_REQUIRED,
)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(x: Any) -> bool:
    """A number a float can hold: not NaN, not infinite, not an integer beyond the float range."""
    return _is_num(x) and (abs(x) <= sys.float_info.max if isinstance(x, int) else math.isfinite(x))


def dp_audit_problems(block: Any, path: str = "dp_audit") -> list[str]:
    """What makes a canary DP-audit block unusable by the gate (empty when usable or skipped)."""
    if isinstance(block, dict) and block.get("status") == "skipped":
        return []
    if not isinstance(block, dict):
        return [f"{path}: expected an object or a skipped entry, got {_type_name(block)}"]
    out = []
    low = block.get("epsilon_lower_bound")  # null: unbounded (every guess right)
    if "epsilon_lower_bound" not in block:
        out.append(f"{path}.epsilon_lower_bound: missing (a number >= 0, or null when unbounded)")
    elif low is not None and not (_finite(low) and low >= 0):
        out.append(f"{path}.epsilon_lower_bound: expected a finite number >= 0 or null (unbounded), got {low!r}")
    claimed = block.get("epsilon_claimed")
    if claimed is not None and not (_finite(claimed) and claimed >= 0):
        out.append(f"{path}.epsilon_claimed: expected a finite number >= 0 or null (no DP), got {claimed!r}")
    return out


def _type_name(x: Any) -> str:
    return "null" if x is None else type(x).__name__


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, msg: str) -> None:
        self.problems.append(f"{path}: {msg}")

    # ------------------------------------------------------------ generic walk
    def walk(self, node: Any, path: str, *, metrics: bool = True) -> None:
        """Estimate / skipped shapes, stable metric keys never bare numbers, finiteness; recursively."""
        if isinstance(node, dict):
            if "value" in node:
                self.estimate(node, path)
            elif "status" in node:
                self.skipped(node, path)
            for k, v in node.items():
                if not isinstance(k, str):
                    self.add(path, f"key {k!r} is not a string")
                    continue
                sub = f"{path}.{k}"
                if metrics and k in ESTIMATE_KEYS and "value" not in node and _is_num(v):
                    self.add(
                        sub,
                        f"bare number {v!r}; expected an estimate {{value, ci, n, unit}} or {{status: skipped, "
                        "reason}",
                    )
                if metrics and k in ESTIMATE_KEYS and isinstance(v, (list, str)):
                    self.add(sub, f"got {_type_name(v)}; expected an estimate or a skipped entry")
                self.walk(v, sub, metrics=metrics)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self.walk(v, f"{path}[{i}]", metrics=metrics)
        elif _is_num(node) and not _finite(node):
            self.add(path, f"{str(node)[:20]!r} is not allowed (not a finite number a float can hold; use null or a "
                           "skipped entry)")

    def finite(self, node: Any, path: str) -> None:
        """Only finiteness (run, data, generator hold free-form config)."""
        if isinstance(node, dict):
            for k, v in node.items():
                self.finite(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self.finite(v, f"{path}[{i}]")
        elif _is_num(node) and not _finite(node):
            self.add(path, f"{str(node)[:20]!r} is not allowed (not a finite number a float can hold; use null)")

    def estimate(self, d: dict, path: str) -> None:
        for key in ("value", "ci", "n", "unit"):
            if key not in d:
                self.add(path, f"estimate is missing {key!r} (an estimate is {{value, ci, n, unit}})")
        v = d.get("value")
        if v is not None and not _is_num(v):
            self.add(f"{path}.value", f"expected a number or null, got {_type_name(v)}")
        ci = d.get("ci")
        if "ci" in d and ci is not None:
            if not (isinstance(ci, list) and len(ci) == 2 and all(c is None or _is_num(c) for c in ci)):
                self.add(f"{path}.ci", f"expected [lo, hi] (numbers) or null, got {ci!r}")
            elif _finite(ci[0]) and _finite(ci[1]) and ci[0] > ci[1] + 1e-12:
                self.add(f"{path}.ci", f"lower bound {ci[0]} exceeds upper bound {ci[1]}")
        if UNIT_INTERVAL_KEYS & set(path.replace("[", ".").split(".")[-2:]):
            bounds = [("value", v)] + ([("ci", c) for c in ci] if isinstance(ci, list) else [])
            out = [x for _, x in bounds if _finite(x) and not -1e-9 <= x <= 1 + 1e-9]
            if out:
                self.add(path, f"a share or probability outside [0, 1] ({out[0]!r})")
        n = d.get("n")
        if "n" in d and not (isinstance(n, int) and not isinstance(n, bool) and n >= 0):
            self.add(f"{path}.n", f"expected a count (integer >= 0), got {n!r}")
        unit = d.get("unit")
        if "unit" in d and unit not in UNITS:
            self.add(f"{path}.unit", f"expected one of {list(UNITS)}, got {unit!r}")
        if d.get("status") == "skipped":
            self.add(path, "an entry cannot be both an estimate and skipped")

    def skipped(self, d: dict, path: str) -> None:
        if d.get("status") != "skipped":
            self.add(f"{path}.status", f"expected 'skipped', got {d.get('status')!r}")
        reason = d.get("reason")
        if not (isinstance(reason, str) and reason.strip()):
            self.add(f"{path}.reason", "a skipped entry needs a non-empty reason string")

    # ------------------------------------------------------------ helpers
    def require(self, d: dict, key: str, path: str, types, what: str) -> Any:
        if key not in d:
            self.add(f"{path}.{key}" if path else key, f"missing (required: {what})")
            return None
        v = d[key]
        if types is not None and not isinstance(v, types) or isinstance(v, bool) and types in (int, (int, float)):
            self.add(f"{path}.{key}" if path else key, f"expected {what}, got {_type_name(v)}")
            return None
        return v

    def mapping(self, d: dict, key: str, path: str, types, what: str) -> None:
        """Optional ``d[key]``: an object whose every value is ``what``."""
        m = d.get(key)
        if m is None:
            return
        if not isinstance(m, dict):
            self.add(f"{path}.{key}", f"expected an object, got {_type_name(m)}")
            return
        for name, item in m.items():
            if not isinstance(item, types):
                self.add(f"{path}.{key}.{name}", f"expected {what}, got {_type_name(item)}")

    def section_or_skipped(self, d: dict, key: str, path: str) -> dict | None:
        """Required key holding a dict of results or a skipped entry; returns the dict if not skipped."""
        v = self.require(d, key, path, dict, "an object or {status: skipped, reason}")
        if v is None or v.get("status") == "skipped":
            return None
        return v

    # ------------------------------------------------------------ sections
    def top(self, r: Any) -> None:
        if not isinstance(r, dict):
            self.add("(root)", f"expected a JSON object, got {_type_name(r)}")
            return
        for key in TOP_LEVEL:
            if key not in r:
                self.add(key, "missing (required top-level key)")
        ver = r.get("schema_version")
        if "schema_version" in r and ver not in SUPPORTED_VERSIONS:
            self.add(
                "schema_version",
                f"unknown version {ver!r}; this cmraudit reads {list(SUPPORTED_VERSIONS)} (upgrade cmraudit or re-run "
                "the audit)",
            )
        self.run(r.get("run"))
        self.data(r.get("data"))
        self.generator(r.get("generator"))
        for stage in STAGES:
            v = r.get(stage)
            if stage in r and not isinstance(v, dict):
                self.add(stage, f"expected an object or {{status: skipped, reason}}, got {_type_name(v)}")
        if isinstance(r.get("privacy"), dict) and r["privacy"].get("status") != "skipped":
            self.privacy(r["privacy"])
        for stage, key in (("fidelity", "distribution"), ("utility", "regimes")):
            sec = r.get(stage)
            if isinstance(sec, dict) and sec.get("status") != "skipped":
                self.mapping(sec, key, stage, dict, "an object or a skipped entry")
        self.verdicts(r.get("verdicts"))
        if r.get("dp_audit") is not None:
            self.problems.extend(dp_audit_problems(r["dp_audit"]))
        for key, v in r.items():
            if key in STAGES:
                self.walk(v, key, metrics=True)
            else:
                self.finite(v, key)

    def run(self, run: Any) -> None:
        if run is None:
            return
        if not isinstance(run, dict):
            self.add("run", f"expected an object, got {_type_name(run)}")
            return
        for key, t in RUN_REQUIRED.items():
            self.require(run, key, "run", t, t.__name__)
        self.mapping(run, "data_fingerprints", "run", str, "a fingerprint string")

    def data(self, data: Any) -> None:
        if data is None:
            return
        if not isinstance(data, dict):
            self.add("data", f"expected an object, got {_type_name(data)}")
            return
        for split, counts in SPLIT_REQUIRED.items():
            s = self.require(data, split, "data", dict, "an object with " + ", ".join(counts))
            if s is None:
                continue
            for c in counts:
                self.require(s, c, f"data.{split}", int, "an integer count")
        for split in ("test", "synthetic_paired"):
            if data.get(split) is not None and not isinstance(data[split], dict):
                self.add(f"data.{split}", f"expected an object with counts, got {_type_name(data[split])}")

    def generator(self, g: Any) -> None:
        if g is None:
            return
        if not isinstance(g, dict):
            self.add("generator", f"expected an object, got {_type_name(g)}")
            return
        self.require(g, "name", "generator", str, "the generator name (str)")
        for key in ("params", "training"):
            if g.get(key) is not None and not isinstance(g[key], dict):
                self.add(f"generator.{key}", f"expected an object, got {_type_name(g[key])}")
        if "dp" not in g:
            self.add(
                "generator.dp", "missing (required: null when trained without DP, else {epsilon, delta, accountant})"
            )
        elif g["dp"] is not None:
            dp = g["dp"]
            if not isinstance(dp, dict):
                self.add("generator.dp", f"expected null or an object, got {_type_name(dp)}")
                return
            for key, t in DP_REQUIRED.items():
                self.require(dp, key, "generator.dp", t, "a number" if t is not str else "str")
            eps, delta = dp.get("epsilon"), dp.get("delta")
            if _finite(eps) and eps < 0:
                self.add("generator.dp.epsilon", f"expected epsilon >= 0, got {eps!r}")
            if _finite(delta) and not 0 <= delta < 1:
                self.add("generator.dp.delta", f"expected delta in [0, 1), got {delta!r}")
            self.mapping(dp, "stages", "generator.dp", dict, "an object (one stage's budget)")

    def privacy(self, p: dict) -> None:
        spaces = self.section_or_skipped(p, "feature_spaces", "privacy")
        for name, space in (spaces or {}).items():
            path = f"privacy.feature_spaces.{name}"
            if not isinstance(space, dict):
                self.add(path, f"expected an object or a skipped entry, got {_type_name(space)}")
                continue
            if space.get("status") == "skipped":
                continue
            cd = self.section_or_skipped(space, "copy_detection", path)
            if cd is not None:
                for key in ("copy_rate", "patients_copied"):
                    self.require(cd, key, f"{path}.copy_detection", dict, "an estimate or a skipped entry")
        mia = self.section_or_skipped(p, "mia", "privacy")
        for attack, entry in (mia or {}).items():
            path = f"privacy.mia.{attack}"
            if not isinstance(entry, dict):
                self.add(path, f"expected an object or a skipped entry, got {_type_name(entry)}")
                continue
            if entry.get("status") == "skipped":
                continue
            for level in ("patient", "slice"):
                lv = self.section_or_skipped(entry, level, path)
                if lv is None:
                    continue
                for key in ("auc", "tpr_at_1pct_fpr"):
                    self.require(lv, key, f"{path}.{level}", dict, "an estimate or a skipped entry")
                roc = lv.get("roc")
                if isinstance(roc, dict) and "fpr" in roc:
                    fpr, tpr = roc.get("fpr"), roc.get("tpr")
                    if not (isinstance(fpr, list) and isinstance(tpr, list) and len(fpr) == len(tpr)
                            and all(_finite(x) for x in fpr + tpr)):
                        self.add(f"{path}.{level}.roc", "fpr and tpr must be lists of numbers of equal length")

    def verdicts(self, v: Any) -> None:
        if v is None:
            return
        if not isinstance(v, dict):
            self.add("verdicts", f"expected an object, got {_type_name(v)}")
            return
        if v.get("policy") is not None and not isinstance(v["policy"], dict):
            self.add("verdicts.policy", f"expected an object, got {_type_name(v['policy'])}")
        self.mapping(v, "rules", "verdicts", dict, "an object (one rule's result)")
        overall = v.get("overall")
        if overall not in VERDICTS:
            self.add("verdicts.overall", f"expected one of {list(VERDICTS)}, got {overall!r}")
        checks = v.get("checks")
        if not isinstance(checks, dict):
            self.add("verdicts.checks", f"expected an object, got {_type_name(checks)}")
            return
        for name, c in checks.items():
            if not (isinstance(c, dict) and c.get("verdict") in VERDICTS and isinstance(c.get("reason"), str)):
                self.add(
                    f"verdicts.checks.{name}", f"expected {{verdict: one of {list(VERDICTS)}, reason: str}}, got {c!r}"
                )


def validate_report(report: Any, *, source: str = "report.json") -> None:
    """Check ``report`` against schema 1.0; raise one ReportSchemaError listing every problem.

    ``source`` names the file in the message (exit code 2 on the CLI).
    """
    problems = report_problems(report)
    if problems:
        shown = problems[:25]
        more = f"; … and {len(problems) - 25} more" if len(problems) > 25 else ""
        raise ReportSchemaError(
            f"{source}: does not match report schema {SCHEMA_VERSION} ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}): " + "; ".join(shown) + more + " (see docs/report-schema.md)"
        )


def report_problems(report: Any) -> list[str]:
    """Every schema problem of ``report`` as 'path: message' strings (empty when valid)."""
    c = _Checker()
    c.top(report)
    return c.problems
