"""Patient / generation ids of imported image files: ``--ids CSV`` rows by file, or ``--id-pattern`` groups of the
file name (``cmraudit data import images``, :mod:`.images`)."""
from __future__ import annotations

import csv
import re
from pathlib import Path

from ...errors import DataError
from ..image_files import ID_COLUMNS, file_stem


def read_ids_csv(path: Path) -> dict[str, dict]:
    """``file,patient_id[,vendor,frame,slice_index,source,spacing_y_mm,spacing_x_mm,annotated]`` → rows by file stem."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"file", "patient_id"} <= set(reader.fieldnames or []):
                raise DataError(f"{path}: needs columns file and patient_id (found {reader.fieldnames})")
            rows = list(reader)
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable CSV ({e})") from e
    out: dict[str, dict] = {}
    for row in rows:
        stem = file_stem(row["file"])
        if stem in out:  # the patient is the unit of membership: a slice may not belong to two
            raise DataError(f"{path}: {row['file']} is listed twice (patients {out[stem]['patient_id']!r} and "
                            f"{row['patient_id']!r}); give each file one row")
        out[stem] = row
    return out


def ids_for(
    path: Path, n: int, *, pattern: re.Pattern | None, table: dict | None, ids_path: Path | None
) -> list[dict]:
    stem = file_stem(path)
    if table is not None:
        row = table.get(stem)
        if row is None:
            raise DataError(f"{path}: not listed in {ids_path} (column file)")
        base = {k: (row.get(k) or "") for k in ID_COLUMNS}
    elif pattern is not None:
        m = pattern.search(path.name)
        if not m:
            raise DataError(f"{path}: file name does not match --id-pattern {pattern.pattern!r}")
        g = m.groupdict()
        pid = g.get("patient") if "patient" in m.re.groupindex else (m.group(1) if m.re.groups else m.group(0))
        if pid is None:  # an optional group that took no part in the match: never the id "None"
            group = "patient" if "patient" in m.re.groupindex else "1"
            raise DataError(f"{path}: --id-pattern {pattern.pattern!r} matched without its group {group} "
                            "(the patient id); make the group required")
        base = {
            "patient_id": pid,
            "vendor": g.get("vendor") or "",
            "frame": g.get("frame") or "",
            "slice_index": g.get("slice") or "",
        }
    else:
        base = {"patient_id": stem, "vendor": "", "frame": "", "slice_index": ""}
    if not str(base["patient_id"]).strip():
        raise DataError(f"{path}: empty patient id")
    si = str(base["slice_index"]).strip()
    if si and not si.lstrip("-").isdigit():
        raise DataError(f"{path}: slice_index {si!r} is not a whole number"
                        + (f" (in {ids_path})" if table is not None else ""))
    start = int(si) if si else 0
    rows = []
    for k in range(n):
        rows.append({**base, "slice_index": start + k})
    return rows
