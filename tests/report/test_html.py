"""HTML report: self-contained, every number explained, no real image unless asked (issue 8)."""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pytest
from scipy import ndimage

from cmraudit.cli.main import main
from cmraudit.report.html import render_html
from cmraudit.report.plots import MASK_ALPHA, MASK_COLOURS
from .report_fixtures import make_run_dir


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Tags:
    p = _Tags()
    p.feed(text)
    return p


def inline_pngs(text: str) -> list[np.ndarray]:
    """Decode every inline image of the page to an RGB float array."""
    out = []
    for tag, attrs in _parse(text).tags:
        if tag == "img":
            src = attrs["src"]
            assert src.startswith("data:image/png;base64,"), src[:60]
            out.append(mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")[..., :3])
    return out


def panels(rgb: np.ndarray, size: int) -> list[np.ndarray]:
    """Square non-white regions of a figure resampled to size×size (RGB); block centres sampled,
    so an image drawn with nearest-neighbour interpolation is recovered exactly."""
    lab, n = ndimage.label(rgb.min(axis=2) < 0.97)
    out = []
    for sl in ndimage.find_objects(lab):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if h < 16 or w < 16 or not 0.8 <= h / w <= 1.25:
            continue
        ys = (sl[0].start + (np.arange(size) + 0.5) * h / size).astype(int)
        xs = (sl[1].start + (np.arange(size) + 0.5) * w / size).astype(int)
        out.append(rgb[np.ix_(ys, xs)])
    return out


def unblend(panel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey value under the mask overlay of each pixel (RGB = (1-a)·grey + a·colour, a and colours known),
    and where it could be recovered."""
    grey = panel.mean(axis=2)
    ok = (panel.max(axis=2) - panel.min(axis=2)) < 0.03
    a = MASK_ALPHA
    for colour in MASK_COLOURS.values():
        g = (panel - a * np.asarray(colour)) / (1 - a)
        hit = ~ok & ((g.max(axis=2) - g.min(axis=2)) < 0.03)
        grey[hit] = g.mean(axis=2)[hit]
        ok |= hit
    return grey, ok


def best_correlation(panel: np.ndarray, images: np.ndarray) -> float:
    """Max Pearson correlation between a panel's (un-overlaid) grey values and each slice."""
    grey, ok = unblend(panel)
    if ok.mean() < 0.5:
        return 0.0
    p = grey[ok]
    best = 0.0
    for im in images:
        q = np.asarray(im)[ok]
        if p.std() > 1e-6 and q.std() > 1e-6:
            best = max(best, float(np.corrcoef(p, q)[0, 1]))
    return best


def shown_slices(text: str, images: np.ndarray) -> int:
    """How many panels of the page reproduce one of ``images`` (correlation > 0.9)."""
    size = images.shape[-1]
    return sum(best_correlation(p, images) > 0.9 for png in inline_pngs(text) for p in panels(png, size))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("run"), "copycat")


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("run_private"), "holdout")


@pytest.fixture(scope="module")
def default_html(private_run):
    return render_html(private_run[0]).read_text()


def test_default_report_has_no_real_training_image(private_run, default_html):
    root, train, synthetic = private_run
    text = default_html
    assert "No real patient image" in text
    # the detector works: the synthetic slices shown are found …
    assert shown_slices(text, np.asarray(synthetic.images)) >= len(synthetic)
    # … and no training slice is
    assert shown_slices(text, np.asarray(train.images)) == 0


def test_flagged_copies_are_withheld(run):
    """A copycat's synthetic slices are training slices: flagged ones never appear, and the report says why."""
    root, train, synthetic = run
    text = render_html(root).read_text()
    assert shown_slices(text, np.asarray(synthetic.images)) == 0
    assert shown_slices(text, np.asarray(train.images)) == 0
    assert "flagged as copies of training slices and are withheld" in text


def test_include_real_images_shows_them(run, tmp_path):
    root, train, _ = run
    text = render_html(root, include_real_images=True, out=tmp_path / "real.html").read_text()
    assert "CONTAINS REAL PATIENT IMAGES" in text
    # the training grid (12 slices) plus the real side of the 4 closest pairs
    assert shown_slices(text, np.asarray(train.images)) >= len(train) + 4


def test_self_contained(default_html):
    text = default_html
    tags = _parse(text).tags
    assert not [t for t, a in tags if t in ("script", "link", "iframe", "object", "embed")]
    without_payloads = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"(https?:)?//[a-z]", without_payloads, re.I)  # no external resource or link
    imgs = [a for t, a in tags if t == "img"]
    # samples, utility bars, fidelity bars, 2 ROC levels, 2 DCR histograms, pair grid
    assert len(imgs) >= 8 and all(a["src"].startswith("data:image/png;base64,") and a.get("alt") for a in imgs)
    for section in ("summary", "samples", "fidelity", "utility", "privacy", "dp", "provenance"):
        assert f"id='{section}'" in text


def test_every_number_is_explained_with_unit(default_html):
    rows = _parse(default_html).rows
    metric_rows = [r for r in rows if len(r) == 7 and not r[0].startswith("metric")]
    assert len(metric_rows) > 30
    for r in metric_rows:
        assert r[6] and "no description" not in r[6], r
        assert r[5] and r[5] != "—" or r[1].startswith("skipped"), r  # what the value is measured in
        assert r[4] in ("patient", "slice") or r[1].startswith("skipped"), r


def test_cli_report_command_and_verdict(run, capsys):
    root, _, _ = run
    assert main(["report", str(root)]) == 0
    assert "shareable" in capsys.readouterr().out
    text = (root / "report.html").read_text()
    assert "Overall privacy verdict" in text and "v-fail" in text


def test_report_without_artefacts_still_renders(tmp_path):
    from cmraudit.report import write_report
    from .report_fixtures import make_report

    write_report(tmp_path, make_report("holdout"))
    text = render_html(tmp_path).read_text()
    assert "No synthetic dataset found" in text and "v-pass" in text


def test_report_package_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys, cmraudit.report, cmraudit.report.html, cmraudit.report.compare, cmraudit.cli.report; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
