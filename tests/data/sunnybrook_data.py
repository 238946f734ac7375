"""Where the real Sunnybrook subset lives (../shared/data/sunnybrook beside the repo, or
$CMRAUDIT_SHARED/data/sunnybrook)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def sunnybrook_root() -> Path | None:
    env = os.environ.get("CMRAUDIT_SHARED")
    candidates = [Path(env) / "data" / "sunnybrook"] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sunnybrook")
    for c in candidates:
        if (c / "link.csv").is_file() and (c / "dicoms").is_dir() and (c / "contourfiles").is_dir():
            return c.resolve()
    return None


SUNNYBROOK = sunnybrook_root()
requires_sunnybrook = pytest.mark.skipif(
    SUNNYBROOK is None,
    reason="real Sunnybrook subset not found: expected ../shared/data/sunnybrook beside the repo or "
           "$CMRAUDIT_SHARED/data/sunnybrook",
)
