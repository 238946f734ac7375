"""Write a benchmark's markdown block under its own heading in docs/benchmarks.md (replacing the previous block)."""
from __future__ import annotations

import platform
import resource
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    import os

    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = float("nan")
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at start"


def record(key: str, heading: str, body: str) -> None:
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n### {heading}\n\n{body.strip()}\n{end}"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        _, post = rest.split(end, 1)
        text = pre + block + post
    else:
        if "## Privacy engine" not in text:
            text = text.rstrip() + "\n\n## Privacy engine (issue 5)\n"
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
