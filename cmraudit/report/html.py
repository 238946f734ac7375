"""The self-contained HTML report (one file, inline PNG plots, no scripts, no external resources).

By default the report is meant to be shared: it shows synthetic slices, distances and
statistics only. Real patient images (training samples, the real side of flagged pairs)
are drawn only with ``include_real_images=True`` (``--include-real-images``).
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import read_dataset
from ..io_guard import write_text_atomic
from . import html_sections as hs
from . import plots
from .html_tables import _dp, _estimate_table, _fmt, _img, _provenance, _summary, _verdicts
from .io import read_report
from .walk import feature_spaces, is_skipped, leaves, roc_curves, top_pairs

HTML_NAME = "report.html"
GRID_N = 16
_E = html.escape

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0
1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}td,th{border:1px solid #ddd;padding:.25em
.5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.meaning{color:#555;font-size:.92em}.skip{color:#8a6d00}.banner{padding:.6em 1em;border-radius:4px;margin:1em 0}
.share{background:#e8f5e9;border:1px solid #a5d6a7}.private{background:#ffebee;border:1px solid
#ef9a9a;font-weight:bold}
.v-pass{background:#c8e6c9}.v-fail{background:#ffcdd2}.v-inconclusive{background:#fff3c4}.v-not_required{background:#eee}
img{max-width:100%}figure{display:inline-block;margin:.5em 1em .5em
0}figcaption{font-size:.85em;color:#555;max-width:480px}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
.headline{border:2px solid #607d8b;border-radius:6px;padding:.2em 1em .6em;margin:1em 0;background:#fafcfd}
.headline h2{margin-top:.4em}.v-measured{background:#e3f2fd}.smoke{background:#fff8e1;border:2px solid #ffb300}
.underpowered{background:#fff3e0;border:1px solid #ffb74d}nav#toc ol{columns:2;margin:.3em 0}
td[title]{cursor:help;text-decoration:underline dotted #999}
"""


def _read_ds(path: Path):
    try:
        return read_dataset(path) if path.is_dir() else None
    except Exception:  # noqa: BLE001 - a missing/corrupt optional artefact only drops a figure
        return None


def _pick(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(k, n)).round().astype(int)) if n else np.zeros(0, int)


def withheld_slices(report: dict) -> tuple[set[int] | None, str]:
    """Synthetic slices the shared report must not show: flagged as copies (within the copy threshold of a
    training slice) in any feature space. ``None`` when the audit gives no per-slice flags (not checked)."""
    p = report.get("privacy") if isinstance(report, dict) else None
    if not isinstance(p, dict) or is_skipped(p):
        return None, "the privacy audit did not run, so no synthetic slice was checked against the training set"
    out: set[int] = set()
    checked = False
    for space, entry in feature_spaces(p).items():
        cd = entry.get("copy_detection") if isinstance(entry, dict) else None
        if isinstance(cd, dict) and isinstance(cd.get("flagged_indices"), list):
            checked = True
            out |= {int(i) for i in cd["flagged_indices"] if isinstance(i, int)}
    if not checked:
        return None, "the report lists no per-slice copy flags (older report), so no synthetic slice could be checked"
    return out, ""


def _samples(run_dir: Path, include_real: bool, report: dict | None = None) -> str:
    out = []
    syn = _read_ds(run_dir / "synthetic")
    withheld, why = withheld_slices(report or {})
    if syn is None or len(syn) == 0:
        out.append("<p class='skip'>No synthetic dataset found in the run directory (RUN/synthetic).</p>")
    elif withheld is None and not include_real:
        out.append(
            f"<p class='skip'>Synthetic samples withheld: {_E(why)}. Rerun with --include-real-images to show them "
            "(the report is then private).</p>"
        )
    else:
        keep = np.array([i for i in range(len(syn)) if include_real or i not in (withheld or set())], dtype=int)
        idx = keep[_pick(len(keep), GRID_N)] if len(keep) else np.zeros(0, int)
        if withheld and not include_real:
            out.append(
                f"<p class='banner private'>{len(withheld)} of {len(syn)} synthetic slices are flagged as copies of "
                "training slices and are withheld from this report (they may show a real patient); see the privacy "
                "section and RUN/privacy/per_slice_copies.csv.</p>"
            )
        if len(idx):
            out.append(
                _img(
                    plots.sample_grid(syn.images[idx], syn.masks[idx]),
                    "synthetic samples",
                    f"{len(idx)} of {len(syn)} synthetic slices with their generated masks (RV blue, MYO green, LV "
                    "red).",
                )
            )
    if include_real:
        tr = _read_ds(run_dir / "data" / "train")
        if tr is not None and len(tr):
            idx = _pick(len(tr), GRID_N)
            out.append(_img(plots.sample_grid(tr.images[idx], tr.masks[idx]), "real training samples",
                            f"REAL: {len(idx)} training slices with expert masks, for visual comparison."))
    return "".join(out)


def _privacy(report: dict, run_dir: Path, include_real: bool) -> str:
    p = report.get("privacy")
    if is_skipped(p):
        return f'<p class="skip">Not computed: {_E(p.get("reason", ""))}</p>'
    out = []
    for level, curves in sorted(roc_curves(p).items()):
        out.append(
            _img(
                plots.roc_plot(curves, title=f"membership inference, {level} level"),
                f"ROC {level}",
                f"ROC curves of each attack at the {level} level, log axes (TPR at 1% FPR is read at the grey line). "
                "Curves on the diagonal = the attacker learns nothing.",
            )
        )
    syn = None
    for space, entry in feature_spaces(p).items():
        h = entry.get("dcr_histogram")
        if isinstance(h, dict) and {"bins", "train", "holdout_to_train"} <= set(h) and "holdout" not in h:
            cd = entry.get("copy_detection") if isinstance(entry.get("copy_detection"), dict) else {}
            thr = float(cd["threshold"]) if isinstance(cd.get("threshold"), (int, float)) else None
            out.append(
                _img(
                    plots.dcr_histogram(
                        h["bins"], h["train"], h["holdout_to_train"], title=f"copy statistic ({space})", threshold=thr
                    ),
                    f"copy statistic {space}",
                    f"{space}: residual of each synthetic slice to its closest training slice "
                    "(red) and of each novel real (holdout) slice (blue, the calibration reference); the dashed line "
                    "is "
                    "the copy threshold. Red mass left of the line = copies.",
                )
            )
        elif isinstance(h, dict) and {"bins", "train", "holdout"} <= set(h):
            thr = None
            cd = entry.get("copy_detection")
            if isinstance(cd, dict) and isinstance(cd.get("threshold"), (int, float)):
                thr = float(cd["threshold"])
            out.append(
                _img(
                    plots.dcr_histogram(
                        h["bins"],
                        h["train"],
                        h["holdout"],
                        title=f"distance to closest record ({space})",
                        threshold=thr,
                    ),
                    f"DCR {space}",
                    f"{space} features: distance of each synthetic slice to its closest training slice (red) and "
                    "holdout slice (blue). A red mass left of the blue one means training slices are reproduced.",
                )
            )
        pairs = top_pairs(entry)
        if pairs and not include_real:  # the synthetic side of a flagged pair may be a copy: never shown
            withheld, _ = withheld_slices(report)
            pairs = [
                q
                for q in pairs
                if withheld is not None and q.get("synthetic_index") not in withheld and not q.get("flagged")
            ]
        if pairs:
            syn = syn if syn is not None else _read_ds(run_dir / "synthetic")
            out.append(_pairs(pairs, space, syn, run_dir, include_real))
    out.append(_estimate_table(p, "privacy"))
    return "".join(out)


def _pairs(pairs: list[dict], space: str, syn, run_dir: Path, include_real: bool, k: int = 8) -> str:
    pairs = [
        q for q in pairs if isinstance(q.get("synthetic_index"), int) and not isinstance(q.get("synthetic_index"), bool)
    ][:k]
    rows = "".join(
        f'<tr><td class="num">{_fmt(q.get("synthetic_index"))}</td><td '
        f'class="num">{_fmt(q.get("distance"))}</td><td>{_fmt(q.get("flagged"))}</td></tr>'
        for q in pairs
    )
    table = (
        "<table><tr><th>synthetic slice</th><th>distance to nearest training slice</th><th>flagged as copy</th></tr>"
        f"{rows}</table>"
    )
    if syn is None:
        return f"<h3>Closest pairs ({_E(space)})</h3>{table}"
    si = np.array([int(q["synthetic_index"]) for q in pairs if 0 <= int(q["synthetic_index"]) < len(syn)], dtype=int)
    if len(si) == 0:
        return f"<h3>Closest pairs ({_E(space)})</h3>{table}"
    images, masks = [np.asarray(syn.images[si])], [np.asarray(syn.masks[si])]
    caption = "Synthetic side of the closest pairs (the real side is shown only with --include-real-images)."
    if include_real:
        tr = _read_ds(run_dir / "data" / "train")
        ti = [q.get("train_index") for q in pairs]
        if tr is not None and all(isinstance(t, int) and 0 <= t < len(tr) for t in ti):
            images.append(np.asarray(tr.images[ti]))
            masks.append(np.asarray(tr.masks[ti]))
            caption = "Top row synthetic, bottom row REAL nearest training slice."
    grid = plots.sample_grid(np.concatenate(images), np.concatenate(masks), ncols=len(si))
    return f"<h3>Closest pairs ({_E(space)})</h3>{table}{_img(grid, f'closest pairs {space}', caption)}"


def _regime(parts: list[str]) -> str:
    """The regime of a utility path (``…regimes.<regime>.dice.LV``), prefixed for the cross-vendor test."""
    if "regimes" not in parts:
        return ""
    i = len(parts) - 1 - parts[::-1].index("regimes")
    name = parts[i + 1] if i + 1 < len(parts) else ""
    return f"cross-vendor: {name}" if "cross_vendor" in parts else name


def _bars(section: Any, root: str, keys: tuple[str, ...], title: str, ylabel: str, *,
          by_regime: bool = False) -> str:
    """Bars of the estimates under ``keys``; ``by_regime``: coloured by regime, labelled by structure."""
    if not isinstance(section, dict) or is_skipped(section):
        return ""
    labels, values, cis, groups = [], [], [], []
    for leaf in leaves(section, root):
        if leaf.skipped or not any(k in leaf.path.split(".") for k in keys):
            continue
        parts = leaf.path.split(".")
        labels.append(parts[-1] if by_regime else leaf.path[len(root) + 1:])
        values.append(leaf.entry.get("value"))
        cis.append(leaf.entry.get("ci"))
        groups.append(_regime(parts))
    if not labels:
        return ""
    png = plots.estimate_bars(labels, values, cis, title=title, ylabel=ylabel, groups=groups if by_regime else None)
    return _img(png, title, f"{title}; error bars are 95% confidence intervals.")


def render_html(
    run_dir: str | os.PathLike, *, include_real_images: bool = False, out: str | os.PathLike | None = None
) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) from ``run_dir/report.json``; returns the path.

    Real images are embedded only when ``include_real_images`` is True.
    """
    run_dir = Path(run_dir)
    report = read_report(run_dir)
    name = _E(str((report.get("generator") or {}).get("name", "")))
    withheld, why = withheld_slices(report)
    if include_real_images:
        banner = ('<div class="banner private">CONTAINS REAL PATIENT IMAGES (--include-real-images). '
                  'Do not share outside the data-protection perimeter.</div>')
    elif withheld is None:
        banner = f'<div class="banner share">No synthetic or real slice shown: {_E(why)}.</div>'
    else:
        extra = f" {len(withheld)} synthetic slices flagged as copies are withheld." if withheld else ""
        banner = (
            '<div class="banner share">No real patient image in this report: synthetic slices checked against the '
            f"training set by the copy search, distances and statistics only.{extra}</div>"
        )
    path = Path(out) if out else run_dir / HTML_NAME
    # training snapshots are not in the copy search: shown only when no final synthetic slice was flagged
    show_snap = include_real_images or withheld == set()
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>cmraudit report — {name}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>cmraudit report — {name}</h1>", hs.banners(report), banner,
        hs.headline(report, hs.card_href(run_dir, path)), hs.toc(),
        "<h2 id='summary'>Summary and verdicts</h2>", _summary(report), _verdicts(report),
        "<h2 id='training'>Training</h2>", hs.training(run_dir, snapshots=show_snap),
        "<h2 id='samples'>Samples</h2>", _samples(run_dir, include_real_images, report),
        "<h2 id='distributions'>Distributions: real vs synthetic</h2>",
        hs.distributions(_read_ds(run_dir / "data" / "test"), _read_ds(run_dir / "synthetic")),
        "<h2 id='fidelity'>Fidelity</h2>",
        _bars(report.get("fidelity"), "fidelity", ("precision", "recall", "density", "coverage"),
              "precision / recall / density / coverage", "share (density: ratio)"),
        _estimate_table(report.get("fidelity"), "fidelity"),
        "<h2 id='utility'>Utility</h2>",
        _bars(report.get("utility"), "utility", ("dice",), "segmentation Dice per regime", "Dice", by_regime=True),
        _estimate_table(report.get("utility"), "utility"),
        "<h2 id='privacy'>Privacy</h2>", _privacy(report, run_dir, include_real_images),
        "<h2 id='privacy-utility'>Privacy–utility</h2>", hs.privacy_utility(report),
        "<h2 id='dp'>Differential privacy</h2>", _dp(report),
        "<h2 id='provenance'>Run provenance</h2>", _provenance(report),
        "<p class='meaning'>Units: <b>patient</b> — n counts patients and the CI resamples patients (membership is "
        "decided per patient); <b>slice</b> — n counts 2-D slices. Generated by cmraudit; schema in "
        "docs/report-schema.md.</p></body></html>",
    ]
    path = Path(out) if out else run_dir / HTML_NAME

    return write_text_atomic(path, "".join(parts))  # removes its temporary on any failure
