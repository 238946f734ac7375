"""The ``index.csv`` of a prepared dataset (docs/data-format.md): one row per slice, written and parsed here.

Columns (:data:`cmraudit.data.format.INDEX_COLUMNS`): patient_id, vendor, frame, slice_index, source, annotated
(structures labelled on the slice, e.g. "RV;MYO;LV"; "none" for an image-only slice), spacing_y_mm, spacing_x_mm
(empty when unknown). :mod:`cmraudit.data.dataset` reads and writes whole datasets with these helpers.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..errors import DataError
from .format import ALL_STRUCTURES, INDEX_COLUMNS, _fmt_spacing, bits_to_structures, structures_to_bits


def write_index(file: Path, ds) -> None:
    """Write the per-slice index of ``ds`` (a :class:`~cmraudit.data.dataset.Dataset`) to ``file``."""
    with open(file, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(INDEX_COLUMNS)
        for i in range(len(ds)):
            w.writerow(
                [
                    ds.patient_id[i],
                    ds.vendor[i],
                    ds.frame[i],
                    int(ds.slice_index[i]),
                    ds.source[i],
                    ";".join(bits_to_structures(int(ds.annotated[i]))) or "none",
                    _fmt_spacing(float(ds.spacing_mm[i, 0])),
                    _fmt_spacing(float(ds.spacing_mm[i, 1])),
                ]
            )


def read_index(path: Path, n: int) -> dict[str, np.ndarray]:
    """Parse ``path / "index.csv"`` of a dataset of ``n`` slices into the :class:`Dataset` index columns.

    Returns patient_id, vendor, frame, slice_index, source, annotated and spacing_mm ([n, 2]) arrays; raises
    :class:`DataError` naming the file (and the row) on a missing column, a row count other than ``n``, an
    unknown structure or a non-numeric slice index or spacing.
    """
    cols: dict[str, list] = {c: [] for c in INDEX_COLUMNS}
    try:
        with open(path / "index.csv", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in INDEX_COLUMNS[:5] if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path / 'index.csv'}: missing columns {missing}")
            for row in reader:
                for c in INDEX_COLUMNS:
                    cols[c].append(row.get(c, ""))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"{path / 'index.csv'}: unreadable ({e})") from e
    if len(cols["patient_id"]) != n:
        raise DataError(f"{path / 'index.csv'}: {len(cols['patient_id'])} rows but images.npy has {n} slices")

    def _num(v: str | None, conv, col: str, row: int, empty):
        if v in ("", None):
            return empty
        try:
            return conv(v)
        except ValueError:
            raise DataError(f"{path / 'index.csv'}: row {row + 2}: {col} {v!r} is not a number") from None

    def _sp(v: str, i: int, col: str) -> float:
        x = _num(v, float, col, i, float("nan"))
        if v not in ("", None) and not (math.isfinite(x) and x > 0):  # empty: unknown (NaN); else a real size
            raise DataError(f"{path / 'index.csv'}: row {i + 2}: {col} {v!r} is not a positive size in mm (leave it "
                            "empty when unknown)")
        return x

    for i, pid in enumerate(cols["patient_id"]):
        if not str(pid or "").strip():
            raise DataError(f"{path / 'index.csv'}: row {i + 2}: empty patient_id (every slice needs its patient)")

    try:
        annotated = [
            0
            if a == "none"
            else structures_to_bits([s for s in (a or "RV;MYO;LV").split(";") if s])
            if a is not None
            else ALL_STRUCTURES
            for a in cols["annotated"]
        ]
    except DataError as e:
        raise DataError(f"{path / 'index.csv'}: annotated column: {e}") from None
    return {
        "patient_id": np.array(cols["patient_id"], dtype=object),
        "vendor": np.array(cols["vendor"], dtype=object),
        "frame": np.array(cols["frame"], dtype=object),
        "slice_index": np.array([_num(x, int, "slice_index", i, -1) for i, x in enumerate(cols["slice_index"])],
                                dtype=np.int64),
        "source": np.array(cols["source"], dtype=object),
        "annotated": np.array(annotated, dtype=np.uint8),
        "spacing_mm": np.array([[_sp(a, i, "spacing_y_mm"), _sp(b, i, "spacing_x_mm")]
                                for i, (a, b) in enumerate(zip(cols["spacing_y_mm"], cols["spacing_x_mm"]))],
                               dtype=np.float64).reshape(n, 2),
    }
