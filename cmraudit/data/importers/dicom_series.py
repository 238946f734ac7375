"""Reading single-frame DICOM images: header facts (slice location, cardiac phase, spacing, vendor) and pixels.

Ordering: within a patient, ``slice_index`` is the rank of the image's SliceLocation among the
distinct locations of that patient's readable DICOMs (ascending mm, rounded to 0.01 mm; the
projection of ImagePositionPatient on the slice normal when SliceLocation is absent).
``frame`` is the cardiac phase index: ``floor(TriggerTime / (NominalInterval / CardiacNumberOfImages))``
(0-based, the phase the image belongs to in its cine) when both tags are present, else the rank
of TriggerTime among the images at the same location. Spacing is PixelSpacing (row, column) in mm.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import DataError

_VENDORS = {"GE": "GE", "SIEMENS": "Siemens", "PHILIPS": "Philips", "CANON": "Canon", "TOSHIBA": "Canon"}


@dataclass
class DicomImage:
    """Header facts of one single-frame DICOM image (pixels are read lazily)."""

    path: Path
    instance: int
    location_mm: float
    trigger_time_ms: float | None
    phase: int | None  # from TriggerTime / (NominalInterval / CardiacNumberOfImages); None if unknown
    spacing_mm: tuple[float, float] | None  # PixelSpacing (row, column)
    shape: tuple[int, int]
    vendor: str


def vendor_name(manufacturer: str) -> str:
    """Short vendor name from the Manufacturer tag ("GE MEDICAL SYSTEMS" → "GE"); unknown names kept as given."""
    up = manufacturer.upper()
    for key, name in _VENDORS.items():
        if up.startswith(key) or f" {key}" in f" {up}":
            return name
    return manufacturer.strip()


def _num(ds, tag: str) -> float | None:
    v = ds.get(tag)
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read_header(path: Path) -> DicomImage:
    """Read the header of one DICOM file; DataError naming the file when unusable."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on non-conformant UIDs, common in anonymised data
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from e
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise DataError(f"{path}: DICOM has no Rows/Columns (not an image, or the file is truncated)")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1 or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise DataError(f"{path}: only single-frame greyscale DICOM images are supported")
    inst = ds.get("InstanceNumber")
    if inst in (None, ""):
        raise DataError(f"{path}: DICOM has no InstanceNumber (needed to pair it with its contours)")
    loc = _num(ds, "SliceLocation")
    if loc is None:
        ipp, iop = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
        if ipp is None or iop is None or len(iop) != 6:
            raise DataError(f"{path}: DICOM has neither SliceLocation nor ImagePositionPatient/ImageOrientationPatient")
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        loc = float(np.dot(np.asarray(ipp, float), normal))
    ps = ds.get("PixelSpacing")
    spacing = None
    if ps is not None:
        try:
            spacing = (float(ps[0]), float(ps[1]))
        except (TypeError, ValueError, IndexError) as e:
            raise DataError(f"{path}: unreadable PixelSpacing {ps!r}") from e
        if not all(math.isfinite(s) and s > 0 for s in spacing):
            raise DataError(f"{path}: PixelSpacing {spacing} must be two positive numbers (mm)")
    tt = _num(ds, "TriggerTime")
    rr, n_img = _num(ds, "NominalInterval"), _num(ds, "CardiacNumberOfImages")
    phase = None
    if tt is not None and rr and n_img and rr > 0 and n_img >= 1:
        phase = int(min(max(math.floor(tt / (rr / n_img)), 0), int(n_img) - 1))
    return DicomImage(path=Path(path), instance=int(inst), location_mm=round(float(loc), 2), trigger_time_ms=tt,
                      phase=phase, spacing_mm=spacing, shape=(int(rows), int(cols)),
                      vendor=vendor_name(str(ds.get("Manufacturer", ""))))


def read_pixels(img: DicomImage) -> np.ndarray:
    """Pixel array (float64, rescaled by RescaleSlope/Intercept when present); DataError when missing or truncated."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(img.path))
            if "PixelData" not in ds:
                raise DataError(f"{img.path}: DICOM has no pixel data")
            arr = np.asarray(ds.pixel_array, dtype=np.float64)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom raises many kinds for truncated or odd pixel data
        raise DataError(f"{img.path}: unreadable pixel data ({type(e).__name__}: {e})") from e
    if arr.shape != img.shape:
        raise DataError(f"{img.path}: pixel data shape {arr.shape} differs from Rows×Columns {img.shape}")
    slope, icpt = _num(ds, "RescaleSlope"), _num(ds, "RescaleIntercept")
    if slope is not None or icpt is not None:
        arr = arr * (1.0 if slope is None else slope) + (0.0 if icpt is None else icpt)
    if not np.isfinite(arr).all():
        raise DataError(f"{img.path}: pixel data contains NaN or Inf")
    return arr


def orderings(images: Sequence[DicomImage]) -> tuple[dict[float, int], dict[int, int]]:
    """(slice index per location, phase per instance) — see the module docstring."""
    locs = sorted({im.location_mm for im in images})
    slice_of = {loc: i for i, loc in enumerate(locs)}
    phase_of: dict[int, int] = {}
    for loc in locs:
        at = [im for im in images if im.location_mm == loc]
        if all(im.phase is not None for im in at):
            phase_of.update({im.instance: int(im.phase) for im in at})
        else:
            times = sorted({im.trigger_time_ms for im in at if im.trigger_time_ms is not None})
            for im in at:
                phase_of[im.instance] = (
                    times.index(im.trigger_time_ms) if im.trigger_time_ms is not None else -1
                )  # -1: unknown
    return slice_of, phase_of
