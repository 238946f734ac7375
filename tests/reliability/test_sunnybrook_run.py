"""Issue 15: `run` on the real Sunnybrook import (5 patients) is refused before any training, naming the split sizes."""

from __future__ import annotations

import time

import pytest

from cmraudit.errors import EXIT_DATA

from ..data.sunnybrook_data import SUNNYBROOK, requires_sunnybrook
from .conftest import cli

pytestmark = [pytest.mark.realdata, requires_sunnybrook]


def test_run_on_sunnybrook_refused_before_training(tmp_path, capsys):
    data = tmp_path / "sunnybrook"
    assert (
        cli(
            ["data", "import", "sunnybrook", str(SUNNYBROOK), "--out", str(data), "--crop", "96", "--size", "32"],
            capsys,
        )[0]
        == 0
    )
    t0 = time.perf_counter()
    rc, out, err = cli(
        ["run", "-g", "ddpm", "--preset", "micro", "--data", str(data), "--out", str(tmp_path / "run")], capsys
    )
    assert rc == EXIT_DATA and len(err.strip().splitlines()) == 1
    assert "5 patients split 3 / 1 / 1 (train / holdout / test)" in err and "holdout 1 < 2" in err and str(data) in err
    assert time.perf_counter() - t0 < 30  # refused on entry, not after minutes of training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sunnybrook"]
