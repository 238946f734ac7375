"""The tables and text sections of report.html: every number of a section with its CI, n, unit and meaning; the
verdicts; the run summary; the DP guarantee; the run provenance (and the figure and number formats they share).
"""
from __future__ import annotations

import base64
import html
import json
from typing import Any

from . import html_sections as hs
from .explain import UNIT_TEXT, label_of_path, meaning_of_path, scale_of_path
from .walk import is_skipped, leaves

_E = html.escape


def _img(png: bytes, alt: str, caption: str = "") -> str:
    b64 = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{_E(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{_E(alt)}" src="data:image/png;base64,{b64}">{cap}</figure>'


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return _E(str(x))


def _meaning(path: str) -> str:
    return meaning_of_path(path) or "no description registered for this metric"


def _metric_row(path: str, root: str, cells: str) -> str:
    name = f'<td title="{_E(path)}">{_E(label_of_path(path, root))}</td>'
    return (f"<tr class='metric'>{name}{cells}<td>{_E(scale_of_path(path) or '—')}</td>"
            f"<td class='meaning'>{_E(_meaning(path))}</td></tr>")


def _estimate_table(section: Any, root: str) -> str:
    """Every number of a section with its CI, n, unit and one-line meaning."""
    if is_skipped(section):
        return f'<p class="skip">Not computed: {_E(section.get("reason", ""))}</p>'
    rows = []
    for leaf in leaves(section, root):
        if leaf.skipped:
            cells = f'<td colspan="4" class="skip">skipped: {_E(leaf.entry.get("reason", ""))}</td>'
            rows.append(_metric_row(leaf.path, root, cells))
            continue
        e = leaf.entry
        ci = e.get("ci")
        ci_s = "—" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"
        unit = e.get("unit", "")
        rows.append(_metric_row(leaf.path, root, (
            f'<td class="num">{_fmt(e.get("value"))}</td><td class="num">{ci_s}</td>'
            f'<td class="num">{_fmt(e.get("n"))}</td><td title="{_E(UNIT_TEXT.get(unit, ""))}">{_E(unit)}</td>')))
    if not rows:
        return "<p>No numbers in this section.</p>"
    head = ("<tr><th>metric (hover: JSON path)</th><th>value</th><th>95% CI</th><th>n</th><th>n counts</th>"
            "<th>measured in</th><th>what it means</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _verdicts(report: dict) -> str:
    v = report.get("verdicts") or {}
    checks = v.get("checks") or {}
    overall = v.get("overall", "inconclusive")
    rows = "".join(
        f'<tr><td>{_E(name.replace("_", " "))}</td><td class="v-{_E(c.get("verdict", ""))}">{_E(c.get("verdict", ""))}'
        f'</td><td class="meaning" title="{_E(c.get("reason", ""))}">{_E(hs.check_words(name, c, v))}</td></tr>'
        for name, c in checks.items()
    )
    src = (v.get("policy") or {}).get("source", "default policy")
    return (
        f'<p>Overall privacy verdict: <span class="v-{_E(overall)}" style="padding:.1em .5em"><b>{_E(overall)}</b>'
        f"</span> under the {_E(src)}. <span class='meaning'>pass = 95% CI upper bound within budget; fail = CI "
        "lower bound above budget; inconclusive = the interval straddles the budget or the metric was not computed."
        "</span></p>"
        f"<table><tr><th>check</th><th>verdict</th><th>why (hover: the gate's reason and JSON path)</th></tr>{rows}"
        f"</table>{hs.verdict_table(report)}"
    )


def _summary(report: dict) -> str:
    d = report.get("data", {})
    g = report.get("generator", {})
    rows = [("generator", g.get("name"))]
    for split in ("train", "holdout", "test", "synthetic"):
        s = d.get(split)
        if isinstance(s, dict):
            rows.append((f"{split} set", f"{s.get('patients', '—')} patients, {s.get('slices', '—')} slices"))
    body = "".join(f"<tr><th>{_E(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _dp(report: dict) -> str:
    dp = (report.get("generator") or {}).get("dp")
    if dp is None:
        return (
            "<p>No differential-privacy guarantee: the generator was trained without DP-SGD (generator.dp is null).</p>"
        )
    rows = "".join(
        f"<tr><th>{_E(str(k))}</th><td>"
        f"{_fmt(v) if not isinstance(v, (dict, list)) else '<pre>' + _E(json.dumps(v, indent=1)) + '</pre>'}</td></tr>"
        for k, v in dp.items()
    )
    return (
        "<p class='meaning'>(ε, δ)-differential privacy of generator training: an attacker's odds of telling whether "
        "any one patient was in the "
        "training set grow by at most e<sup>ε</sup> (plus probability δ). Patient-level accounting protects all slices "
        "of a patient.</p>"
        f"<table>{rows}</table>"
    )


def _provenance(report: dict) -> str:
    text = json.dumps(
        {
            "schema_version": report.get("schema_version"),
            "run": report.get("run"),
            "generator": report.get("generator"),
        },
        indent=2,
    )
    return f"<pre>{_E(text)}</pre>"
