"""Where a gate rule reads the report (docs/design.md § 8): the required sections, the named entries (feature spaces
or attacks) of the policy scope and their estimates. Whatever is missing, skipped or lacks a CI upper bound is
collected as a failure, so the rule fails closed.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..estimates import is_skipped
from .policy import Policy

_MIA_KEY = {"mia_auc": "auc", "mia_tpr_at_1pct_fpr": "tpr_at_1pct_fpr"}


def _skip_reason(entry: Any) -> str | None:
    if is_skipped(entry):
        return str(entry.get("reason") or "no reason given")
    return None


def _section(d: Any, key: str, path: str, failures: list[str]) -> dict | None:
    where = f"{path}.{key}" if path else key
    if not isinstance(d, dict) or key not in d:
        failures.append(f"{where} missing")
        return None
    v = d[key]
    why = _skip_reason(v)
    if why is not None:
        failures.append(f"{where} skipped ({why})")
        return None
    if not isinstance(v, dict):
        failures.append(f"{where} is not an object")
        return None
    return v


def _entries(
    parent: dict, wanted: tuple[str, ...], path: str, failures: list[str], notes: list[str]
) -> Iterable[tuple[str, dict]]:
    """Named entries (feature spaces or attacks). Listed in the policy → must be present and run;
    unlisted skipped entries are noted and ignored (e.g. a white-box attack on a generator without a loss)."""
    names = list(wanted) if wanted else list(parent)
    for name in names:
        sub = f"{path}.{name}"
        if name not in parent:
            failures.append(f"{sub} missing (required by the policy scope)")
            continue
        entry = parent[name]
        why = _skip_reason(entry)
        if why is not None:
            if wanted:
                failures.append(f"{sub} skipped ({why})")
            else:
                notes.append(f"{name} not run ({why})")
            continue
        if not isinstance(entry, dict):
            failures.append(f"{sub} is not an object")
            continue
        yield name, entry


def _estimate(entry: Any, path: str, failures: list[str]) -> dict | None:
    if entry is None:
        failures.append(f"{path} missing")
        return None
    why = _skip_reason(entry)
    if why is not None:
        failures.append(f"{path} skipped ({why})")
        return None
    if not (isinstance(entry, dict) and "value" in entry):
        failures.append(f"{path} is not an estimate")
        return None
    if entry.get("value") is None:  # not computed (e.g. n = 0): whatever its interval says, nothing was measured
        failures.append(f"{path} has no value (not computed)")
        return None
    ci = entry.get("ci")
    if not (isinstance(ci, list) and len(ci) == 2 and isinstance(ci[1], (int, float))):
        failures.append(f"{path} has no CI upper bound")
        return None
    return entry


def _candidates(report: dict, rule: str, policy: Policy) -> tuple[list[tuple[str, dict]], list[str], list[str]]:
    failures: list[str] = []
    notes: list[str] = []
    out: list[tuple[str, dict]] = []
    privacy = _section(report, "privacy", "", failures)
    if privacy is None:
        return out, failures, notes
    if rule in ("copy_rate", "patients_copied"):
        spaces = _section(privacy, "feature_spaces", "privacy", failures)
        if spaces is not None:
            for name, space in _entries(spaces, policy.feature_spaces, "privacy.feature_spaces", failures, notes):
                path = f"privacy.feature_spaces.{name}"
                cd = _section(space, "copy_detection", path, failures)
                if cd is not None:
                    est = _estimate(cd.get(rule), f"{path}.copy_detection.{rule}", failures)
                    if est is not None:
                        out.append((f"{path}.copy_detection.{rule}", est))
    else:
        mia = _section(privacy, "mia", "privacy", failures)
        if mia is not None:
            for name, attack in _entries(mia, policy.attacks, "privacy.mia", failures, notes):
                path = f"privacy.mia.{name}"
                level = _section(attack, policy.mia_level, path, failures)
                if level is not None:
                    key = _MIA_KEY[rule]
                    est = _estimate(level.get(key), f"{path}.{policy.mia_level}.{key}", failures)
                    if est is not None:
                        out.append((f"{path}.{policy.mia_level}.{key}", est))
    return out, failures, notes
