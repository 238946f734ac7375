"""``cmraudit data export``: a prepared dataset → one image file (and one label-mask file) per slice.

Layout of OUT::

    images/<name>.png | .nii.gz   one file per slice
    masks/<name>.png  | .nii.gz   label masks, ACDC numbering (0 bg, 1 RV, 2 MYO, 3 LV); absent for an image-only set
    ids.csv                       file, patient_id, vendor, frame, slice_index, source, spacing_y_mm, spacing_x_mm,
                                  annotated (structures labelled on the slice, e.g. LV;MYO, or none)
    export.json                   marker, scaling rule and the command that imports OUT back

PNG images store ``round((x + 1) / 2 · (2^bits − 1))`` for x in [-1, 1] (8 or 16 bit); NIfTI stores
x itself (float32). ``--scale`` in export.json re-imports them exactly up to that quantisation.
OUT is written to a temporary sibling folder and renamed; an existing OUT is replaced only with
``overwrite`` and only when it is an earlier export (it holds export.json).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from ..io_guard import atomic_dir, check_output
from .dataset import bits_to_structures, read_dataset
from .image_files import ID_COLUMNS, write_nifti, write_png

FORMATS = ("png", "nifti")
MARKER = "cmraudit-export"


@dataclass
class ExportSummary:
    out: Path
    slices: int
    format: str
    bits: int | None
    has_masks: bool
    reimport: str

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "slices": self.slices,
            "format": self.format,
            "bits": self.bits,
            "has_masks": self.has_masks,
            "reimport": self.reimport,
        }


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(s)).strip("-") or "x"


def export_dataset(
    src: str | os.PathLike, *, out: str | os.PathLike, format: str = "png", bits: int = 8, overwrite: bool = False
) -> ExportSummary:
    """Write the prepared dataset ``src`` as per-slice PNG or NIfTI files (see module doc)."""
    if format not in FORMATS:
        raise UsageError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    if format == "png" and bits not in (8, 16):
        raise UsageError(f"--bits {bits}: PNG export writes 8 or 16 bit")
    src, out = Path(src), Path(out)
    check_output(out, inputs=[("DIR", src)], option="--out", produces="export")
    ds = read_dataset(src)
    if not len(ds):
        raise DataError(f"{src}: no slices to export (an empty dataset)")
    ds.check_values(name=str(src))  # NaN/Inf or values outside [-1, 1] would export as garbage pixels
    o, r = out.resolve(), src.resolve()
    if o == r or r in o.parents or o in r.parents:
        raise UsageError(f"--out {out}: must not be {src}, inside it or above it")
    if out.exists():
        if not overwrite:
            raise DataError(f"{out}: output already exists (pass --overwrite to replace it)")
        if not _is_export(out):
            raise DataError(
                f"{out}: exists and is not an export written by cmraudit (no export.json); refusing to replace it"
            )
    has_masks = bool(ds.meta.get("has_masks", True))
    ext = ".png" if format == "png" else ".nii.gz"
    with atomic_dir(out, kind="export") as tmp:  # disk full / read-only: one DataError naming OUT (exit 4)
        (tmp / "images").mkdir()
        if has_masks:
            (tmp / "masks").mkdir()
        width = max(5, len(str(len(ds))))
        top = 2**bits - 1
        rows = []
        for i in range(len(ds)):
            name = f"{i:0{width}d}_{_safe(ds.patient_id[i])}{ext}"
            x = np.asarray(ds.images[i], dtype=np.float32)
            m = np.asarray(ds.masks[i], dtype=np.uint8)
            sp = tuple(float(v) for v in ds.spacing_mm[i])
            if format == "png":
                write_png(tmp / "images" / name, np.rint((np.clip(x, -1, 1) + 1.0) / 2.0 * top), bits=bits)
                if has_masks:
                    write_png(tmp / "masks" / name, m, bits=8)
            else:
                write_nifti(tmp / "images" / name, x, spacing=sp)
                if has_masks:
                    write_nifti(tmp / "masks" / name, m, spacing=sp)
            rows.append(
                [
                    name,
                    ds.patient_id[i],
                    ds.vendor[i],
                    ds.frame[i],
                    int(ds.slice_index[i]),
                    ds.source[i],
                    *("" if not np.isfinite(v) else f"{v:.6g}" for v in sp),
                    ";".join(bits_to_structures(int(ds.annotated[i]))) or "none",
                ]
            )
        with open(tmp / "ids.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", *ID_COLUMNS])
            w.writerows(rows)
        scale = f"range:0,{top}" if format == "png" else "none"
        reimport = (
            f"cmraudit data import images {out / 'images'} --ids {out / 'ids.csv'} --scale {scale}"
            + (f" --masks {out / 'masks'}" if has_masks else "")
            + " --out DATASET"
        )
        meta = {
            "format": MARKER,
            "files": format,
            "bits": bits if format == "png" else None,
            "slices": len(ds),
            "has_masks": has_masks,
            "labels": "acdc" if has_masks else None,
            "scale": scale,
            "png_rule": f"value = round((x + 1) / 2 * {top})" if format == "png" else None,
            "source_dataset": str(src),
            "source_fingerprint": ds.meta.get("fingerprint"),
            "reimport": reimport,
        }
        (tmp / "export.json").write_text(json.dumps(meta, indent=2))
    return ExportSummary(
        out=out,
        slices=len(ds),
        format=format,
        bits=bits if format == "png" else None,
        has_masks=has_masks,
        reimport=reimport,
    )


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / "export.json").read_text()).get("format") == MARKER
    except (OSError, ValueError, AttributeError):
        return False
