"""report.html in headless Chromium: no console errors, every plot loads (issue 8, item 6).

Chromium is installed by .ci/run (Debian package ``chromium``); the test is skipped with a
reason only where no Chromium binary can be found (set CMRAUDIT_CHROMIUM to point at one).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from cmraudit.report.html import render_html
from .report_fixtures import make_run_dir

# injected into a test-only copy: records errors, then checks every <img> after load
_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__errors.push(t.tagName ? ('resource failed: ' + t.tagName + ' ' + String(t.src || t.href).slice(0, 60)) :
  ('error: ' + e.message));
}, true);
(function () { var ce = console.error; console.error = function () { window.__errors.push('console.error: ' +
Array.prototype.join.call(arguments, ' ')); ce.apply(console, arguments); }; })();
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt;
  });
  var out = document.createElement('pre'); out.id = 'cmraudit-probe';
  out.textContent = JSON.stringify({images: imgs.length, broken: bad, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str | None:
    for cand in (
        os.environ.get("CMRAUDIT_CHROMIUM"),
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _probe(html_path, tmp_path) -> tuple[dict, str]:
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium binary found (apt-get install -y chromium, or set CMRAUDIT_CHROMIUM)")
    page = tmp_path / "probe.html"
    text = html_path.read_text()
    page.write_text(text.replace("<head>", "<head>" + _PROBE, 1))
    cmd = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="cmraudit-probe">(.*?)</pre>', out.stdout, re.S)
    assert m, f"probe did not run (exit {out.returncode}): {out.stderr[-2000:]}"
    result = json.loads(
        m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    )
    console = [ln for ln in out.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    return result, "\n".join(console)


def test_report_loads_in_chromium(tmp_path):
    root, _, _ = make_run_dir(tmp_path / "run", "holdout")
    result, console = _probe(render_html(root), tmp_path)
    assert result["images"] >= 8
    assert result["broken"] == []
    assert result["errors"] == []
    assert console == ""


def test_probe_detects_a_broken_plot(tmp_path):
    """The check can fail: a corrupt inline PNG is reported as broken with an error."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
        "<img alt='ok' "
        "src='data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='>"
        "<img alt='corrupt' src='data:image/png;base64,AAAAAAAA'></body></html>"
    )
    result, _ = _probe(page, tmp_path)
    assert result["images"] == 2
    assert result["broken"] == ["corrupt"]
    assert result["errors"]


# a second probe for a real micro run: contents links, headline, loss curves, metric descriptions
_PAGE_PROBE = """<script>
window.addEventListener('load', function () {
  var toc = Array.prototype.slice.call(document.querySelectorAll('nav#toc a[href^="#"]'));
  var missing = toc.filter(function (a) { return !document.getElementById(a.getAttribute('href').slice(1)); })
                   .map(function (a) { return a.getAttribute('href'); });
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr.metric'));
  var bare = rows.filter(function (r) {
    var m = r.querySelector('td.meaning'); var t = m ? m.textContent.trim() : '';
    return !t || t.indexOf('no description') >= 0;
  }).map(function (r) { return r.cells[0].getAttribute('title'); });
  var loss = Array.prototype.slice.call(document.images).filter(function (i) {
    return i.alt.indexOf('loss curves') >= 0 && i.complete && i.naturalWidth > 0; }).length;
  var snaps = Array.prototype.slice.call(document.images).filter(function (i) {
    return i.alt.indexOf('samples during training') === 0 && i.complete && i.naturalWidth > 0; }).length;
  var h = document.getElementById('headline');
  var out = document.createElement('pre'); out.id = 'cmraudit-page';
  out.textContent = JSON.stringify({toc: toc.length, toc_missing: missing, metric_rows: rows.length,
    undescribed: bare, loss_images: loss, snapshot_images: snaps, headline: h ? h.textContent.slice(0, 4000) : null,
    headline_first: !!h && !!document.querySelector('h1 ~ section#headline'),
    micro_banner: !!document.getElementById('micro-banner')});
  document.body.appendChild(out);
});
</script>"""


def test_micro_run_report_in_chromium(micro_cli_run, tmp_path):
    """A real micro run's report.html: headline first, contents links resolve, loss curves load, every metric
    row described, no console error; and a screenshot renders."""
    html_path = micro_cli_run["run_dir"] / "report.html"
    result, console = _probe(html_path, tmp_path)
    assert result["broken"] == [] and result["errors"] == [] and console == ""
    page = tmp_path / "page.html"
    page.write_text(html_path.read_text().replace("<head>", "<head>" + _PAGE_PROBE, 1))
    exe = _chromium()
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={tmp_path / 'profile2'}", "--virtual-time-budget=10000"]
    out = subprocess.run(common + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="cmraudit-page">(.*?)</pre>', out.stdout, re.S)
    assert m, out.stderr[-2000:]
    info = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert info["headline"] and "Copies" in info["headline"] and "Membership inference" in info["headline"]
    for topic in ("Differential privacy", "Fidelity", "Utility"):
        assert topic in info["headline"]
    assert info["headline_first"] and info["micro_banner"]
    assert info["toc"] >= 10 and info["toc_missing"] == []
    assert info["loss_images"] >= 1 and info["snapshot_images"] >= 1
    assert info["metric_rows"] > 100 and info["undescribed"] == []
    shot = tmp_path / "report.png"
    subprocess.run(common + ["--window-size=1200,2400", f"--screenshot={shot}", html_path.as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 50_000  # a rendered page, not a blank one
