"""Gate policies: which privacy numbers must stay under which budget (docs/design.md § 8).

A policy is a small TOML file (``tomllib``; Python 3.10 needs the ``tomli`` backport)::

    [rules]                      # budget each rule's CI *upper* bound must not exceed
    copy_rate = 0.02             # registered copy search; any copy detected with 95 % confidence fails
    patients_copied = false      # off by default: undecidable at public-dataset sizes (docs/concepts.md#gate)
    mia_auc = 0.75               # max over attacks, at the patient level
    mia_tpr_at_1pct_fpr = false  # off by default: needs >= 100 holdout patients
    epsilon = 8.0                # checked only when given; a report without DP then fails
    dp_audit = 1.0               # fails when the canary audit's lower bound on epsilon > 1.0 x the claimed epsilon
    # a rule set to false is switched off (say why in a comment)

    [scope]
    feature_spaces = ["registered"]  # copy rules read these spaces; [] = every space the report computed
    attacks = []                 # [] = every attack the report ran
    mia_level = "patient"        # or "slice"

An optional ``[policy]`` table may hold ``name`` and ``description`` (strings, recorded with the result); any
other key there is an error, so a budget put in the wrong table cannot be silently ignored.

The default policy is built from rules a clean generator can pass at the size of a public dataset
(ACDC: 150 patients split 75 / 37 / 38, 400 synthetic slices); ``cmraudit plan`` prints which rules
are decidable at a given size and what size each undecidable rule needs.
Rules not named in the file keep their defaults (``DEFAULT_RULES``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

# rule name -> default budget (None = only checked when the policy sets it)
DEFAULT_RULES: dict[str, float | None] = {
    "copy_rate": 0.02,
    "patients_copied": None,
    "mia_auc": 0.75,
    "mia_tpr_at_1pct_fpr": None,
    "epsilon": None,
    "dp_audit": 1.0,
}
DEFAULT_FEATURE_SPACES: tuple[str, ...] = ("registered",)
# rules whose "fail" means "detected at all": any confident copy is a leak, whatever the budget
DETECTION_RULES = ("copy_rate", "patients_copied")

RULE_HELP = {
    "copy_rate": "share of synthetic slices that are copies of a training slice (95% CI, corrected for false flags and "
                 "recall; "
    "fails when copies are detected, passes when the upper bound is within budget; unit slice)",
    "patients_copied": "share of training patients with at least one copied slice (95% CI upper bound, max over "
                       "feature spaces; unit patient)",
    "mia_auc": "membership-inference ROC AUC, 0.5 = chance (95% CI upper bound, max over attacks; unit: the "
               "policy's mia_level, patient by default)",
    "mia_tpr_at_1pct_fpr": "share of member patients an attacker finds while wrongly accusing 1% of non-members (95% "
                           "CI upper bound, max over attacks)",
    "epsilon": "differential-privacy epsilon of the generator training (total over stages; an upper bound by "
               "construction)",
    "dp_audit": "canary DP audit: fails when the measured lower bound on epsilon exceeds budget x the claimed epsilon "
    "(a falsified DP claim); not required when the report holds no dp_audit block",
}

_LEVELS = ("patient", "slice")
_META_KEYS = ("name", "description")  # the optional [policy] table: what the policy is for, nothing the gate reads


@dataclass(frozen=True)
class Policy:
    """Budgets per rule (None = rule off) and the scope the rules read from."""

    rules: Mapping[str, float | None] = field(default_factory=lambda: dict(DEFAULT_RULES))
    feature_spaces: tuple[str, ...] = DEFAULT_FEATURE_SPACES
    attacks: tuple[str, ...] = ()
    mia_level: str = "patient"
    source: str = "default policy"
    name: str | None = None
    description: str | None = None

    def to_dict(self) -> dict:
        meta = {k: v for k, v in (("name", self.name), ("description", self.description)) if v is not None}
        return {
            "source": self.source,
            **meta,
            "rules": dict(self.rules),
            "scope": {
                "feature_spaces": list(self.feature_spaces),
                "attacks": list(self.attacks),
                "mia_level": self.mia_level,
            },
        }


def default_policy() -> Policy:
    return Policy()


def policy_from_dict(d: Mapping[str, Any], *, source: str = "policy") -> Policy:
    """Build a Policy from a parsed TOML mapping; collect every problem into one ConfigError."""
    problems: list[str] = []
    unknown_top = sorted(set(d) - {"rules", "scope", "policy"})
    if unknown_top:
        problems.append(f"unknown section(s) {unknown_top}; expected [rules], [scope] (and optional [policy])")
    meta = d.get("policy", {})
    if not isinstance(meta, Mapping):
        problems.append(f"[policy] must be a table, got {type(meta).__name__}")
        meta = {}
    for key, v in meta.items():  # a budget here would be silently ignored: refuse it
        if key not in _META_KEYS:
            where = " (budgets go under [rules])" if key in DEFAULT_RULES or key == "rules" else ""
            problems.append(f"policy.{key}: unknown key{where}; [policy] holds only {list(_META_KEYS)}")
        elif not isinstance(v, str):
            problems.append(f"policy.{key}: expected a string, got {v!r}")
    rules: dict[str, float | None] = dict(DEFAULT_RULES)
    raw_rules = d.get("rules", {})
    if not isinstance(raw_rules, Mapping):
        problems.append(f"[rules] must be a table, got {type(raw_rules).__name__}")
        raw_rules = {}
    for name, budget in raw_rules.items():
        if name not in DEFAULT_RULES:
            problems.append(f"rules.{name}: unknown rule; expected one of {sorted(DEFAULT_RULES)}")
            continue
        if budget is False:
            rules[name] = None
        elif isinstance(budget, (int, float)) and not isinstance(budget, bool):
            if budget != budget or budget in (float("inf"), float("-inf")):  # nan / inf: never a budget
                problems.append(f"rules.{name}: budget {budget} is not a finite number "
                                "(use false to turn the rule off)")
            elif budget < 0 or (name not in ("epsilon", "dp_audit") and budget > 1):
                problems.append(f"rules.{name}: budget {budget} out of range "
                                f"(expected {'>= 0' if name in ('epsilon', 'dp_audit') else 'a share in [0, 1]'})")
            rules[name] = float(budget)
        else:
            problems.append(f"rules.{name}: expected a number (the budget) or false (rule off), got {budget!r}")
    scope = d.get("scope", {})
    if not isinstance(scope, Mapping):
        problems.append(f"[scope] must be a table, got {type(scope).__name__}")
        scope = {}
    unknown_scope = sorted(set(scope) - {"feature_spaces", "attacks", "mia_level"})
    if unknown_scope:
        problems.append(f"scope: unknown key(s) {unknown_scope}; expected feature_spaces, attacks, mia_level")
    lists = {}
    for key in ("feature_spaces", "attacks"):
        v = scope.get(key, list(DEFAULT_FEATURE_SPACES) if key == "feature_spaces" else [])
        if not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            problems.append(f"scope.{key}: expected a list of names, got {v!r}")
            v = []
        lists[key] = tuple(v)
    level = scope.get("mia_level", "patient")
    if level not in _LEVELS:
        problems.append(f"scope.mia_level: expected one of {list(_LEVELS)}, got {level!r}")
        level = "patient"
    if problems:
        raise ConfigError(f"{source}: invalid gate policy: " + "; ".join(problems) + " (see docs/concepts.md#gate)")
    return Policy(
        rules=rules, feature_spaces=lists["feature_spaces"], attacks=lists["attacks"], mia_level=level, source=source,
        name=meta.get("name"), description=meta.get("description"),
    )


def load_policy(path: str | os.PathLike | None) -> Policy:
    """Read a policy TOML file (None → the documented default policy)."""
    if path is None:
        return default_policy()
    p = Path(path)
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise ConfigError(f"{p}: reading TOML policies on Python 3.10 needs the tomli package (pip install tomli)")
    try:
        d = tomllib.loads(p.read_text())
    except FileNotFoundError as e:
        raise ConfigError(
            f"{p}: policy file not found (pass --policy PATH to a TOML policy, or omit it for the default policy)"
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read policy ({e})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from e
    return policy_from_dict(d, source=str(p))
