"""The first screen of report.html and its newer sections: headline, table of contents, banners,
verdict reasons in words, training curves, real-vs-synthetic distributions, the privacy–utility panel.

Everything is read from report.json and the run folder (RUN/logs/*.csv, RUN/synthetic, RUN/data/test);
no number is recomputed that the report already holds, and no real slice is drawn (histograms only).
"""
from __future__ import annotations

import base64
import csv
import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .walk import is_estimate, is_skipped

_E = html.escape
VERDICT_CLASS = {"pass": "pass", "fail": "fail", "inconclusive": "inconclusive", "not_required": "not_required"}
TOC = (("headline", "Headline"), ("summary", "Summary and verdicts"), ("training", "Training"),
       ("samples", "Samples"), ("distributions", "Distributions"), ("fidelity", "Fidelity"), ("utility", "Utility"),
       ("privacy", "Privacy"), ("privacy-utility", "Privacy–utility"), ("dp", "Differential privacy"),
       ("provenance", "Run provenance"))
SNAPSHOTS_DIR = "logs/snapshots"  # RUN/logs/snapshots/<stage>_step<k>.npy (generators/train_log.py)


def img(png: bytes, alt: str, caption: str = "") -> str:
    b64 = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{_E(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{_E(alt)}" src="data:image/png;base64,{b64}">{cap}</figure>'


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _n(x: Any, pct: bool = False) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "—"
    return f"{100 * x:.3g} %" if pct else f"{x:.3g}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def rule_sentence(rule: dict, what: str, *, pct: bool) -> str:
    """One plain sentence: the number behind a gate rule, its 95 % CI, the budget and what follows."""
    v, lo, hi, budget = (rule.get(k) for k in ("value", "lower", "upper", "budget"))
    verdict = rule.get("verdict")
    if verdict == "not_required" or budget is None:
        return f"No budget set for {what}: {rule.get('reason', 'rule off')}."
    if v is None:
        return f"{_cap(what)} was not measured, so the rule cannot pass: {rule.get('reason', '')}."
    num = f"{what} {_n(v, pct)} (95 % CI {_n(lo, pct)} to {_n(hi, pct)})"
    if verdict == "pass":
        return f"{_cap(num)}: even the upper end is within the budget of {_n(budget, pct)}."
    if verdict == "fail":
        return f"{_cap(num)}: even the lower end is above the budget of {_n(budget, pct)} — a leak."
    hint = str(rule.get("hint") or "")
    why = "; the audit is too small to tell" + (f" ({hint.split(':', 1)[-1].strip()})" if hint else "")
    return f"{_cap(num)}: the interval reaches above the budget of {_n(budget, pct)}{why}."


def _row(topic: str, verdict: str, sentence: str, where: str | None) -> str:
    cls = VERDICT_CLASS.get(verdict, "measured")
    title = f' title="JSON: {_E(where)}"' if where else ""
    return (f"<tr><th>{_E(topic)}</th><td class='v-{cls}'><b>{_E(verdict.replace('_', ' '))}</b></td>"
            f"<td{title}>{_E(sentence)}</td></tr>")


def _fidelity_line(report: dict) -> tuple[str, str, str | None]:
    fid = report.get("fidelity")
    if not isinstance(fid, dict) or is_skipped(fid):
        return "not computed", f"Fidelity was not computed: {_get(fid, 'reason') or 'stage absent'}.", None
    dist = _get(fid, "distribution") or {}
    space = "domain" if isinstance(dist.get("domain"), dict) else next(iter(dist), None)
    d = dist.get(space) if space else None
    p, r = _get(d, "precision", "value"), _get(d, "recall", "value")
    if p is None and r is None:
        return "measured", "No distribution metric was computed (see the fidelity section).", None
    text = (f"In {space} features, {_n(p, True)} of synthetic slices look like real ones (precision) and they cover "
            f"{_n(r, True)} of the real variety (recall); 100 % is ideal. No pass/fail budget is set for fidelity.")
    return "measured", text, f"fidelity.distribution.{space}.precision"


def mean_dice(report: dict, regime: str) -> dict | None:
    """``utility.regimes.<regime>.mean_dice``; for an older report without it, the mean of the per-structure Dice
    values (no CI: the report holds none for the mean)."""
    e = _get(report, "utility", "regimes", regime, "mean_dice")
    if is_estimate(e):
        return e
    per = [v.get("value") for v in (_get(report, "utility", "regimes", regime, "dice") or {}).values()
           if is_estimate(v) and isinstance(v.get("value"), (int, float))]
    return {"value": float(np.mean(per)), "ci": None} if per else None


def _utility_line(report: dict) -> tuple[str, str, str | None]:
    util = report.get("utility")
    if not isinstance(util, dict) or is_skipped(util):
        return "not computed", f"Utility was not computed: {_get(util, 'reason') or 'stage absent'}.", None
    syn = _get(mean_dice(report, "synthetic"), "value")
    real = _get(mean_dice(report, "real"), "value")
    if syn is None:
        return "measured", "The synthetic-only segmenter was not trained (see the utility section).", None
    rel = f" ({_n(syn / real, True)} of the {_n(real)} reached when trained on real slices)" if real else ""
    return ("measured", f"A segmenter trained only on synthetic slices reaches mean Dice {_n(syn)} on real test "
            f"patients{rel}; 1 is perfect. No pass/fail budget is set for utility.",
            "utility.regimes.synthetic.mean_dice")


def _dp_line(report: dict) -> tuple[str, str, str | None]:
    dp = _get(report, "generator", "dp")
    check = _get(report, "verdicts", "checks", "differential_privacy") or {}
    verdict = str(check.get("verdict", "not_required"))
    if not isinstance(dp, dict):
        return verdict, ("Trained without differential privacy: no formal bound on what any attack could learn; the "
                         "verdicts above cover only the attacks that were run."), "generator.dp"
    text = (f"Trained with patient-level DP-SGD: ε = {_n(dp.get('epsilon'))}, δ = {_n(dp.get('delta'))}; "
            "any attacker's odds of telling whether a patient was used grow at most e^ε-fold.")
    return verdict, text, "generator.dp"


def headline(report: dict, card_href: str | None) -> str:
    """The first box: each verdict with one sentence of why and the number behind it."""
    rules = _get(report, "verdicts", "rules") or {}
    checks = _get(report, "verdicts", "checks") or {}
    rows = []
    for topic, check, rule, what, pct in (("Copies", "copy_detection", "copy_rate", "copy rate", True),
                                          ("Membership inference", "membership_inference", "mia_auc",
                                           "strongest attack's AUC", False)):
        rr = rules.get(rule)
        verdict = str(_get(checks, check, "verdict") or "inconclusive")
        sentence = rule_sentence(rr, what, pct=pct) if isinstance(rr, dict) else str(_get(checks, check, "reason"))
        rows.append(_row(topic, verdict, sentence, (rr or {}).get("where") if isinstance(rr, dict) else None))
    rows.append(_row("Differential privacy", *_dp_line(report)))
    rows.append(_row("Fidelity", *_fidelity_line(report)))
    rows.append(_row("Utility", *_utility_line(report)))
    overall = str(_get(report, "verdicts", "overall") or "inconclusive")
    card = (f" The <a href='{_E(card_href)}'>model / data card</a> sums this up for a data steward." if card_href
            else " <code>cmraudit card RUN</code> writes a model / data card.")
    return (f"<section class='headline' id='headline'><h2>Headline</h2><p>Overall privacy verdict: "
            f"<span class='v-{VERDICT_CLASS.get(overall, 'measured')}'><b>{_E(overall)}</b></span>.{card}</p>"
            f"<table class='headline-table'>{''.join(rows)}</table>"
            "<p class='meaning'>Hover a sentence for the report.json path of its number.</p></section>")


def toc() -> str:
    items = "".join(f"<li><a href='#{i}'>{_E(t)}</a></li>" for i, t in TOC)
    return f"<nav id='toc' aria-label='contents'><b>Contents</b><ol>{items}</ol></nav>"


def banners(report: dict) -> str:
    out = []
    if _get(report, "run", "config", "preset") == "micro":
        out.append("<div class='banner smoke' id='micro-banner'><b>Smoke test (micro preset).</b> The generator "
                   "trained "
                   "for a few steps on a handful of tiny phantom subjects: these numbers show that every stage runs, "
                   "not how good or how private a generator is.</div>")
    hints = [(n, r["hint"]) for n, r in (_get(report, "verdicts", "rules") or {}).items()
             if isinstance(r, dict) and str(r.get("hint") or "").startswith("underpowered")]
    if hints:
        items = "".join(f"<li><b>{_E(n.replace('_', ' '))}</b>: {_E(h.split(':', 1)[-1].strip())}</li>"
                        for n, h in hints)
        out.append("<div class='banner underpowered' id='underpowered-banner'><b>Underpowered audit.</b> Too few "
                   "patients or slices to decide these rules either way (cmraudit plan sizes an audit):"
                   f"<ul>{items}</ul></div>")
    return "".join(out)


def verdict_table(report: dict) -> str:
    """The gate's rules in words; the raw reason and the JSON path are on hover."""
    rows = []
    for name, rr in (_get(report, "verdicts", "rules") or {}).items():
        if not isinstance(rr, dict) or rr.get("status") == "off":
            continue
        pct = name in ("copy_rate", "patients_copied", "mia_tpr_at_1pct_fpr")
        title = _E(f"{rr.get('where') or ''} — {rr.get('reason') or ''}".strip(" —"))
        verdict = str(rr.get("verdict", ""))
        rows.append(f"<tr><td>{_E(name.replace('_', ' '))}</td><td class='v-{VERDICT_CLASS.get(verdict, 'measured')}'>"
                    f"{_E(verdict)}</td><td class='meaning' title=\"{title}\">"
                    f"{_E(rule_sentence(rr, name.replace('_', ' '), pct=pct))}</td></tr>")
    if not rows:
        return ""
    return f"<table><tr><th>rule</th><th>verdict</th><th>why (hover: JSON path)</th></tr>{''.join(rows)}</table>"


_CHECK_RULES = {"copy_detection": ("copy_rate", "copy rate", True),
                "membership_inference": ("mia_auc", "strongest attack's AUC", False)}


def check_words(name: str, check: dict, verdicts: dict) -> str:
    """A check's reason in words (the rule's number, CI and budget); the raw reason goes on hover."""
    rule, what, pct = _CHECK_RULES.get(name, (None, "", False))
    rr = (verdicts.get("rules") or {}).get(rule) if rule else None
    if isinstance(rr, dict) and rr.get("status") != "off":
        return rule_sentence(rr, what, pct=pct)
    reason = str(check.get("reason", ""))
    return reason[:1].upper() + reason[1:] + ("." if reason and not reason.endswith(".") else "")


# ------------------------------------------------------------------ training
def read_log(path: Path) -> dict[str, np.ndarray]:
    """Columns of one RUN/logs/<stage>.csv as float arrays (empty cells: NaN)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cols = rows[0].keys() if rows else ()
    return {c: np.array([float(r[c]) if r.get(c) not in (None, "") else np.nan for r in rows]) for c in cols}


def training(run_dir: Path, *, snapshots: bool = True) -> str:
    logs = sorted((run_dir / "logs").glob("*.csv")) if (run_dir / "logs").is_dir() else []
    curves = {}
    for p in logs:
        try:
            d = read_log(p)
        except (OSError, ValueError, csv.Error):
            continue
        if len(d.get("step", ())) and "loss" in d:
            curves[p.stem.replace("_", " ")] = d
    if not curves:
        return "<p class='skip'>No training logs in RUN/logs/ (a generator that does not train, or an older run).</p>"
    out = [img(plots.loss_curves(curves), "loss curves per training stage",
               "Training loss per stage (RUN/logs/<stage>.csv); grey: learning rate on the right axis. "
               "A falling loss shows the stage learned; a flat or rising one that it did not.")]
    if snapshots:
        out.append(snapshot_grids(run_dir))
    elif (run_dir / SNAPSHOTS_DIR).is_dir():
        out.append("<p class='skip'>Samples drawn during training are withheld: the copy search flagged final "
                   "synthetic "
                   "slices (or did not run), and these draws were not checked.</p>")
    return "".join(out)


def snapshot_grids(run_dir: Path) -> str:
    d = run_dir / SNAPSHOTS_DIR
    files = sorted(d.glob("*.npz")) if d.is_dir() else []
    if not files:
        return ""
    out = []
    for f in files:
        try:
            z = np.load(f)
            images, masks, steps = z["images"], z["masks"], z["steps"]
        except (OSError, ValueError, KeyError):
            continue
        k = images.shape[1] if images.ndim == 4 else 0
        if not k:
            continue
        titles = [f"step {int(s)}" if j == 0 else "" for s in steps for j in range(k)]
        out.append(img(plots.sample_grid(images.reshape(-1, *images.shape[2:]), masks.reshape(-1, *masks.shape[2:]),
                                         ncols=k, titles=titles),
                       f"samples during training {f.stem}",
                       f"{f.stem.replace('_', ' ')}: the same {k} draws (fixed seeds, masks drawn by the mask model, "
                       "no patient's) at a few points of training, top row earliest. Not checked by the copy "
                       "search: shown because no final synthetic slice was flagged as a copy."))
    return "".join(out)


# ------------------------------------------------------------------ distributions and panels
def _areas(masks: np.ndarray) -> dict[str, np.ndarray]:
    m = np.asarray(masks)
    return {name: (m == lab).reshape(len(m), -1).sum(1).astype(float)
            for lab, name in ((1, "RV"), (2, "MYO"), (3, "LV"))}


def distributions(real, synthetic) -> str:
    if real is None or synthetic is None or not len(real) or not len(synthetic):
        return "<p class='skip'>Real test set or synthetic set not found in the run folder: no distribution plot.</p>"
    ri, si = np.asarray(real.images, np.float32).ravel(), np.asarray(synthetic.images, np.float32).ravel()
    areas = {f"{k} area (pixels)": (a, b) for (k, a), b in zip(_areas(real.masks).items(),
                                                               _areas(synthetic.masks).values())}
    png = plots.real_vs_synthetic({"intensity (all pixels)": (ri, si), **areas},
                                  labels=(f"real test slices (n = {len(real)})", f"synthetic (n = {len(synthetic)})"))
    return img(png, "intensity and mask-area distributions",
               f"Real test slices (n = {len(real)}, blue) against synthetic slices (n = {len(synthetic)}, red): pixel "
               "intensity and the area of each structure per slice. Histograms only; no slice is shown.")


def _best_auc(report: dict) -> tuple[str, dict] | None:
    mia = _get(report, "privacy", "mia")
    best = None
    for name, entry in (mia or {}).items():
        e = _get(entry, "patient", "auc")
        ok = is_estimate(e) and isinstance(e.get("value"), (int, float))
        if ok and (best is None or e["value"] > best[1]["value"]):
            best = (name, e)
    return best


def privacy_utility(report: dict) -> str:
    best = _best_auc(report)
    syn, real = mean_dice(report, "synthetic"), mean_dice(report, "real")
    if best is None or syn is None:
        return ("<p class='skip'>No privacy–utility panel: it needs a patient-level attack AUC and the "
                "synthetic-only "
                   "segmenter's Dice, and one of them was not computed.</p>")
    png = plots.privacy_utility(best[1], syn, real, attack=best[0],
                                epsilon=_get(report, "generator", "dp", "epsilon"))
    return img(png, "privacy-utility panel",
               f"This run (cross: 95 % CIs): privacy as the strongest patient-level attack ({best[0]}) AUC, 0.5 = "
               "chance (best), against utility as the synthetic-only segmenter's mean Dice; the dashed line is the "
               "Dice of a segmenter trained on real slices. The ideal is the top-left corner. `cmraudit sweep` "
               "draws this for several ε.")


def card_href(run_dir: Path, html_path: Path) -> str | None:
    card = run_dir / "card.md"
    if not card.is_file():
        return None
    return Path(os.path.relpath(card.resolve(), html_path.resolve().parent)).as_posix()
