"""The report acceptance checks on real `cmraudit run` output.

Set CMRAUDIT_REPORT_RUNS to run directories separated by ``:`` (e.g. runs of copycat, holdout
and ddpm); skipped with a reason otherwise. Each run's report must validate, its default HTML
must not show any training slice, and with --include-real-images it renders too.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cmraudit.data.dataset import read_dataset
from cmraudit.report import read_report
from cmraudit.report.html import render_html
from .test_html import shown_slices

RUNS = [Path(p) for p in os.environ.get("CMRAUDIT_REPORT_RUNS", "").split(":") if p]


@pytest.mark.skipif(not RUNS, reason="set CMRAUDIT_REPORT_RUNS=RUN_DIR[:RUN_DIR…] to check real `cmraudit run` output")
@pytest.mark.parametrize("run_dir", RUNS, ids=[p.name for p in RUNS])
def test_real_run_report(run_dir, tmp_path):
    report = read_report(run_dir)  # validates
    assert report["verdicts"]["overall"] in ("pass", "fail", "inconclusive", "not_required")
    text = render_html(run_dir, out=tmp_path / "r.html").read_text()
    train = read_dataset(run_dir / "data" / "train")
    idx = np.linspace(0, len(train) - 1, num=min(len(train), 400)).astype(int)
    if report["generator"]["name"] != "copycat":  # copycat's synthetic set *is* training slices
        assert shown_slices(text, np.asarray(train.images[idx])) == 0
    render_html(run_dir, include_real_images=True, out=tmp_path / "real.html")
