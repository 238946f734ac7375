"""report.html's first screen and training section (issue 17) on the fixture runs (no model needed)."""
from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from cmraudit.data.dataset import write_dataset
from cmraudit.report.html import render_html
from cmraudit.report.html_sections import rule_sentence
from .report_fixtures import make_run_dir


def _logs(root, with_snapshots=True):
    (root / "logs").mkdir(exist_ok=True)
    for stage in ("mask_model", "image_model"):
        with open(root / "logs" / f"{stage}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss", "lr", "grad_norm", "epsilon", "img_per_s"])
            for s in range(1, 41):
                w.writerow([s, 1.0 / s, 1e-3, 0.5, "", 20.0])
    if with_snapshots:
        (root / "logs" / "snapshots").mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        np.savez(root / "logs" / "snapshots" / "image_model.npz", steps=np.array([10, 20, 30, 40]),
                 images=rng.uniform(-1, 1, (4, 4, 32, 32)).astype(np.float16),
                 masks=np.zeros((4, 4, 32, 32), np.uint8))


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    root, train, _ = make_run_dir(tmp_path_factory.mktemp("private"), "holdout")
    write_dataset(train, root / "data" / "test")  # stands in for the real test split (histograms only)
    _logs(root)
    (root / "card.md").write_text("# card\n")
    return root, render_html(root).read_text()


def test_headline_first_with_every_verdict_and_a_card_link(private):
    _, text = private
    head = text.index("id='headline'")
    assert head < text.index("id='toc'") < text.index("id='summary'")
    box = text[head:text.index("</section>", head)]
    for topic in ("Copies", "Membership inference", "Differential privacy", "Fidelity", "Utility"):
        assert f"<th>{topic}</th>" in box
    assert "href='card.md'" in box
    assert re.search(r'title="JSON: privacy\.[a-z_.]+"', box)  # the JSON path on hover


def test_contents_links_resolve(private):
    _, text = private
    links = re.findall(r"<a href='#([a-z-]+)'>", text)
    assert len(links) >= 10
    for target in links:
        assert f"id='{target}'" in text, target


def test_loss_curves_and_snapshots_shown_for_a_clean_run(private):
    _, text = private
    assert 'alt="loss curves per training stage"' in text
    assert 'alt="samples during training image_model"' in text
    assert 'alt="intensity and mask-area distributions"' in text
    assert 'alt="privacy-utility panel"' in text


def test_snapshots_withheld_when_copies_are_flagged(tmp_path):
    root, _, _ = make_run_dir(tmp_path / "copycat", "copycat")
    _logs(root)
    text = render_html(root).read_text()
    assert 'alt="loss curves per training stage"' in text
    assert 'alt="samples during training' not in text and "Samples drawn during training are withheld" in text


def test_micro_banner_and_underpowered_banner(tmp_path):
    from cmraudit.report.io import read_report, write_report

    root, _, _ = make_run_dir(tmp_path / "micro", "holdout")
    r = read_report(root)
    r["run"].setdefault("config", {})["preset"] = "micro"
    rule = r["verdicts"]["rules"]["copy_rate"]
    rule.update(verdict="inconclusive", hint="underpowered: with n = 8 slices even zero copies give a CI upper bound "
                "of 0.353 > 0.02; at least 206 slices are needed for this budget")
    write_report(root, r)
    text = render_html(root).read_text()
    assert "id='micro-banner'" in text and "id='underpowered-banner'" in text and "206 slices" in text
    plain = render_html(make_run_dir(tmp_path / "plain", "holdout")[0]).read_text()
    assert "id='micro-banner'" not in plain


def test_rule_sentences_say_the_number_ci_and_budget():
    base = {"budget": 0.02, "value": 0.0, "lower": 0.0, "upper": 0.01, "verdict": "pass"}
    assert "within the budget of 2 %" in rule_sentence(base, "copy rate", pct=True)
    fail = base | {"value": 0.2, "lower": 0.1, "upper": 0.3, "verdict": "fail"}
    assert "lower end is above the budget" in rule_sentence(fail, "copy rate", pct=True)
    unsure = base | {"upper": 0.35, "verdict": "inconclusive", "hint": "underpowered: at least 206 slices are needed"}
    s = rule_sentence(unsure, "copy rate", pct=True)
    assert "35 %" in s and "too small" in s and "206" in s


def test_micro_run_report_every_metric_row_described(micro_cli_run):
    """Over a real micro run's report: every metric row has a description and a unit; curves and snapshots shown."""
    run_dir = micro_cli_run["run_dir"]
    text = (run_dir / "report.html").read_text()
    rows = re.findall(r"<tr class='metric'>(.*?)</tr>", text, re.S)
    assert len(rows) > 100
    for row in rows:
        meaning = re.search(r"<td class='meaning'>(.*?)</td>", row, re.S)
        assert meaning and meaning.group(1).strip() and "no description" not in meaning.group(1), row[:300]
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert cells[-2].strip() and (cells[-2] != "—" or "skipped" in row), row[:300]  # measured in
    assert "no description registered" not in text
    assert 'alt="loss curves per training stage"' in text
    assert (run_dir / "logs" / "snapshots" / "image_model.npz").is_file()
    assert 'alt="samples during training image_model"' in text
    assert "href='card.md'" in text and (run_dir / "card.md").is_file()


def _figures(monkeypatch):
    """Capture the matplotlib figures the plot functions render (instead of only their PNG bytes)."""
    from cmraudit.report import plots

    figs = []
    real = plots.png_bytes

    def keep(fig):
        fig.canvas.draw()
        figs.append([(a.get_window_extent(), a) for a in fig.axes] + [("legends", fig.legends)])
        return real(fig)

    monkeypatch.setattr(plots, "png_bytes", keep)
    return plots, figs


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_never_cover_the_bars_or_histograms(monkeypatch):
    plots, figs = _figures(monkeypatch)
    labels = [f"{g}.{s}" for g in ("real", "synthetic", "real+synthetic") for s in ("RV", "MYO", "LV")]
    plots.estimate_bars(labels, [0.99] * 9, [[0.98, 1.0]] * 9, title="Dice", ylabel="Dice",
                        groups=[lab.split(".")[0] for lab in labels])
    (box, ax), _ = figs[-1]
    legend = ax.get_legend().get_window_extent()
    assert not _overlaps(legend, box)  # beside the axes, not over the (full-height) bars
    plots.roc_plot({f"attack {i}": ([0, 0.01, 0.1, 1], [0, 0.05, 0.3, 1]) for i in range(8)}, title="ROC")
    (box, ax), _ = figs[-1]
    assert not _overlaps(ax.get_legend().get_window_extent(), box)
    plots.real_vs_synthetic({"a": (np.zeros(5), np.ones(5)), "b": (np.ones(5), np.zeros(5))})
    *axes, (_, legends) = figs[-1]
    assert legends and all(not _overlaps(lg.get_window_extent(), box) for lg in legends for box, _ in axes)


def test_rule_sentences_keep_acronyms():
    s = rule_sentence({"budget": 0.75, "value": 0.4, "lower": 0.0, "upper": 1.0, "verdict": "inconclusive"},
                      "strongest attack's AUC", pct=False)
    assert s.startswith("Strongest attack's AUC 0.4 (95 % CI 0 to 1)"), s
