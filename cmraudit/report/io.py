"""Read and write report.json: validated on write and on read (schema in docs/report-schema.md)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ReportSchemaError
from ..io_guard import make_output_dir, write_text_atomic
from .schema import validate_report

REPORT_NAME = "report.json"


def write_report(run_dir: str | os.PathLike, report: dict) -> Path:
    """Validate ``report`` and write ``run_dir/report.json`` atomically (temp file + rename).

    Raises ReportSchemaError (exit 2) listing every problem; report.json is then not written
    (the invalid dict is kept as ``report.invalid.json`` so a long run's numbers are not lost).
    """
    run_dir = Path(run_dir)
    path = run_dir / REPORT_NAME
    try:
        validate_report(report, source=str(path))
    except ReportSchemaError as e:
        # keep the computed numbers for debugging, under a name no reader accepts as a report
        bad = _dump_invalid(run_dir, report)
        raise ReportSchemaError(f"{e} — not written; the invalid report was kept as {bad}" if bad else str(e)) from e

    make_output_dir(run_dir, kind="run")
    text = json.dumps(report, indent=2, allow_nan=False, default=_default)
    return write_text_atomic(path, text + "\n")  # 0666 & ~umask, like every cmraudit output


def _dump_invalid(run_dir: Path, report) -> Path | None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        bad = run_dir / "report.invalid.json"
        bad.write_text(json.dumps(report, indent=2, default=_default))
        return bad
    except (OSError, TypeError, ValueError):
        return None


def _default(o):
    # numpy scalars / arrays without importing numpy eagerly
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def resolve_report_path(path: str | os.PathLike) -> Path:
    """A run directory or a report.json path → the report.json path."""
    p = Path(path)
    return p / REPORT_NAME if p.is_dir() else p


def read_report(path: str | os.PathLike) -> dict:
    """Read and validate a report (``path`` is report.json or its run directory).

    Raises ReportSchemaError (exit 2) naming the file for a missing file, bad JSON,
    an unknown ``schema_version`` or any missing / malformed field.
    """
    p = resolve_report_path(path)
    if not p.is_file():
        raise ReportSchemaError(
            f"{p}: no such report (expected RUN_DIR/report.json written by `cmraudit run` or `cmraudit audit`)"
        )
    try:
        report = json.loads(p.read_text(), parse_constant=_reject_constant)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise ReportSchemaError(f"{p}: not valid JSON ({e})") from e
    validate_report(report, source=str(p))
    return report


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (use null)")
