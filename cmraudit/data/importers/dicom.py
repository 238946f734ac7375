"""DICOM series + contour / label-mask import (Sunnybrook and a generic layout).

Ordering: within a patient, ``slice_index`` is the rank of the image's SliceLocation among the
distinct locations of that patient's readable DICOMs (ascending mm, rounded to 0.01 mm; the
projection of ImagePositionPatient on the slice normal when SliceLocation is absent).
``frame`` is the cardiac phase index: ``floor(TriggerTime / (NominalInterval / CardiacNumberOfImages))``
(0-based, the phase the image belongs to in its cine) when both tags are present, else the rank
of TriggerTime among the images at the same location. Spacing is PixelSpacing (row, column) in mm.

Partial labels: contours give LV on every contoured image and MYO only where an epicardium was
drawn; RV is never annotated. Each slice's ``annotated`` bits say which structures are known, and
``dataset.json`` lists ``annotated_structures`` / ``unknown_structures`` for the whole set.

Bad input (non-strict): an unreadable or truncated DICOM, a DICOM without pixel data, a contour
with fewer than 3 points and a contour whose image is missing are each skipped and listed in the
summary (``skipped``: (file, reason)); with ``strict=True`` the first one raises DataError naming
the file. Nothing is written unless the whole import succeeds (atomic write).
"""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import DataError
from ..dataset import STRUCTURES, Dataset, bits_to_structures, structures_to_bits, write_dataset
from ..preprocess import PreprocessConfig, preprocess_slice
from ._common import ImportSummary, PatientRecords, SliceRecord, check_slice
from .contours import contours_to_mask, find_contours, read_contour

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
        raise DataError(f"{path}: DICOM has no Rows/Columns (not an image)")
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


class _Problems:
    """Collects file-level problems (non-strict) or raises the first one (strict)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.items: list[tuple[str, str]] = []

    def add(self, err: DataError, who: Path | str) -> None:
        if self.strict:
            raise err
        self.items.append((str(who), str(err)))


def scan_series(folder: Path, problems: _Problems) -> tuple[dict[int, DicomImage], set[str]]:
    """Headers of every ``*.dcm`` below ``folder`` keyed by InstanceNumber; also the stems of unreadable files."""
    images: dict[int, DicomImage] = {}
    bad_stems: set[str] = set()
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file() and q.suffix.lower() == ".dcm"):
        try:
            img = read_header(p)
            if img.instance in images:
                raise DataError(f"{p}: InstanceNumber {img.instance} also used by {images[img.instance].path.name}")
        except DataError as e:
            problems.add(e, p)
            bad_stems.add(p.stem)
            continue
        images[img.instance] = img
    return images, bad_stems


def _orderings(images: Sequence[DicomImage]) -> tuple[dict[float, int], dict[int, int]]:
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
                phase_of[im.instance] = times.index(im.trigger_time_ms) if im.trigger_time_ms is not None else -1
    return slice_of, phase_of


# ------------------------------------------------------------------ mask sources
def _masks_from_contours(entry: dict[str, Path], img: DicomImage) -> tuple[np.ndarray, int]:
    if "i" not in entry:
        raise DataError(f"{entry['o']}: epicardial contour without an endocardial contour (MYO needs both)")
    endo = read_contour(entry["i"], shape=img.shape)
    epi = read_contour(entry["o"], shape=img.shape) if "o" in entry else None
    mask = contours_to_mask(endo, epi, img.shape, where=str(entry["i"]))
    return mask, structures_to_bits(["LV", "MYO"] if epi is not None else ["LV"])


def _find_label_masks(folder: Path) -> dict[int, dict[str, Path]]:
    found: dict[int, dict[str, Path]] = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.suffix.lower() in (".npy", ".png") and p.stem.isdigit():
            if int(p.stem) in found:
                raise DataError(f"{p}: a second label mask for image {int(p.stem)} (first: {found[int(p.stem)]['m']})")
            found[int(p.stem)] = {"m": p}
    return found


def _masks_from_labels(entry: dict[str, Path], img: DicomImage, bits: int) -> tuple[np.ndarray, int]:
    p = entry["m"]
    try:
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(p) as im:
                arr = np.asarray(im)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{p}: unreadable label mask ({type(e).__name__}: {e})") from e
    if arr.shape != img.shape:
        raise DataError(f"{p}: label mask shape {arr.shape} differs from its DICOM {img.path.name} ({img.shape}, rows×columns)")
    if not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < 0 or arr.max(initial=0) > 3:
        raise DataError(f"{p}: label mask must hold integers 0..3 (ACDC numbering: 1 RV, 2 MYO, 3 LV)")
    return arr.astype(np.uint8), bits


# ------------------------------------------------------------------ one patient
def load_patient(dicom_dir: Path, mask_dir: Path, *, patient_id: str, mask_format: str, annotated_bits: int,
                 problems: _Problems) -> tuple[PatientRecords, int]:
    """Labelled slices of one patient and the number of unlabelled DICOMs ignored."""
    images, bad_stems = scan_series(dicom_dir, problems)
    if mask_format == "contours":
        entries, mask_fn = find_contours(mask_dir), _masks_from_contours
    else:
        entries = _find_label_masks(mask_dir)
        mask_fn = lambda e, im: _masks_from_labels(e, im, annotated_bits)  # noqa: E731
    if not images:
        raise DataError(f"{dicom_dir}: no readable DICOM (*.dcm) image")
    slice_of, phase_of = _orderings(list(images.values()))
    slices: list[SliceRecord] = []
    for num in sorted(entries):
        entry = entries[num]
        first = next(iter(entry.values()))
        img = images.get(num)
        if img is None:
            if str(num) in bad_stems or f"{num:04d}" in bad_stems:
                continue  # its DICOM was unreadable and is already listed
            problems.add(DataError(f"{first}: points at image {num}, but {dicom_dir} has no DICOM with InstanceNumber {num}"), first)
            continue
        try:
            mask, bits = mask_fn(entry, img)
            rec = SliceRecord(image=read_pixels(img), mask=mask, frame=str(phase_of[num]),
                              slice_index=slice_of[img.location_mm], spacing_mm=img.spacing_mm, annotated=bits)
            check_slice(rec, where=str(img.path))
        except DataError as e:
            problems.add(e, first if "contour" in str(e) or str(first) in str(e) else img.path)
            continue
        slices.append(rec)
    vendors = sorted({im.vendor for im in images.values() if im.vendor})
    return PatientRecords(patient_id=patient_id, vendor=vendors[0] if len(vendors) == 1 else ";".join(vendors),
                          slices=slices, source_file=str(dicom_dir)), len(images) - len(slices)


# ------------------------------------------------------------------ assembly
def _assemble(patients: list[PatientRecords], *, out: Path, config: PreprocessConfig, source: str, meta: dict) -> Dataset:
    parts = []
    for rec in patients:
        imgs, msks, sps = [], [], []
        for s in rec.slices:
            im, mk, sp = preprocess_slice(s.image, s.mask, config, s.spacing_mm)
            imgs.append(im), msks.append(mk), sps.append(sp)
        n = len(imgs)
        parts.append(Dataset(
            images=np.stack(imgs).astype(np.float32), masks=np.stack(msks).astype(np.uint8),
            patient_id=np.array([rec.patient_id] * n, dtype=object), vendor=np.array([rec.vendor] * n, dtype=object),
            frame=np.array([s.frame for s in rec.slices], dtype=object),
            slice_index=np.array([s.slice_index for s in rec.slices], dtype=np.int64),
            source=np.array([source] * n, dtype=object),
            annotated=np.array([s.annotated for s in rec.slices], dtype=np.uint8),
            spacing_mm=np.array(sps, dtype=np.float64)))
    ds = Dataset.concat(parts)
    union = 0
    for a in np.unique(ds.annotated):
        union |= int(a)
    ds.meta = {**meta, "preprocessing": config.to_dict(),
               "annotated_structures": [s for s in ("LV", "MYO", "RV") if s in bits_to_structures(union)],
               "unknown_structures": [s for s in STRUCTURES if s not in bits_to_structures(union)]}
    if ds.meta["unknown_structures"]:
        ds.meta["notes"] = (f"{', '.join(ds.meta['unknown_structures'])} not annotated in this data: unknown, not background; "
                            "metrics score only annotated structures (per slice: index.csv column 'annotated').")
    write_dataset(ds, out, overwrite=True)
    return ds


def _run(pairs: list[tuple[str, Path, Path]], *, out, config, strict, overwrite, progress, source, mask_format,
         annotated_bits, provenance: dict) -> ImportSummary:
    from rich.progress import Progress

    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out}: output already exists (pass --overwrite to replace it)")
    problems = _Problems(strict)
    patients: list[PatientRecords] = []
    unlabelled = 0
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"importing {source}", total=len(pairs))
        for pid, dicom_dir, mask_dir in pairs:
            bar.advance(task)
            try:
                if not mask_dir.is_dir():
                    raise DataError(f"{mask_dir}: no mask folder for patient {pid}")
                rec, n_unl = load_patient(dicom_dir, mask_dir, patient_id=pid, mask_format=mask_format,
                                          annotated_bits=annotated_bits, problems=problems)
                if not rec.slices:
                    raise DataError(f"{dicom_dir}: patient {pid} has no usable labelled slice")
            except DataError as e:
                problems.add(e, dicom_dir)
                continue
            patients.append(rec)
            unlabelled += n_unl
    if not patients:
        reasons = "; ".join(f"{w}: {r}" for w, r in problems.items[:3])
        raise DataError(f"no usable patient found ({len(problems.items)} skipped{': ' + reasons if reasons else ''})")
    meta = {"provenance": {"importer": source, **provenance, "unlabelled_images_ignored": unlabelled,
                           "skipped": [list(s) for s in problems.items]}}
    ds = _assemble(patients, out=out, config=config, source=source, meta=meta)
    return ImportSummary(out=out, patients=len(patients), slices=len(ds), skipped=problems.items)


# ------------------------------------------------------------------ public importers
def read_link(path: Path) -> dict[str, str]:
    """``patient_id → original_id`` from a Sunnybrook-style ``link.csv``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not {"patient_id", "original_id"} <= set(reader.fieldnames or []):
                raise DataError(f"{path}: expected columns patient_id, original_id (found {reader.fieldnames})")
            link = {r["patient_id"].strip(): r["original_id"].strip() for r in reader if (r.get("patient_id") or "").strip()}
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: unreadable link file ({e})") from e
    if not link:
        raise DataError(f"{path}: link file has no patient rows")
    return link


def import_sunnybrook(root, *, out, config: PreprocessConfig | None = None, strict: bool = False, overwrite: bool = False,
                      progress: bool = True) -> ImportSummary:
    """Import the Sunnybrook Cardiac Data layout: ``link.csv``, ``dicoms/<patient_id>/*.dcm``,
    ``contourfiles/<original_id>/{i,o}-contours/IM-0001-<NNNN>-{i,o}contour-manual.txt`` (NNNN = InstanceNumber).

    Only contoured images are imported. Endocardium → LV (3); epicardium minus endocardium → MYO (2)
    where an epicardium exists (else MYO unknown on that slice); RV is never annotated.
    Patient id = ``patient_id`` of link.csv; vendor from the Manufacturer tag; source ``"sunnybrook"``.
    """
    root = Path(root)
    for need in ("link.csv", "dicoms", "contourfiles"):
        if not (root / need).exists():
            raise DataError(f"{root}: not a Sunnybrook folder (missing {need}; expected link.csv, dicoms/, contourfiles/)")
    link = read_link(root / "link.csv")
    pairs = [(pid, root / "dicoms" / pid, root / "contourfiles" / orig) for pid, orig in sorted(link.items())]
    missing = [str(d) for _, d, _ in pairs if not d.is_dir()]
    if missing and strict:
        raise DataError(f"{missing[0]}: DICOM folder listed in link.csv does not exist")
    return _run(pairs, out=out, config=config or PreprocessConfig(), strict=strict, overwrite=overwrite, progress=progress,
                source="sunnybrook", mask_format="contours", annotated_bits=structures_to_bits(["LV", "MYO"]),
                provenance={"root": root.name, "layout": "sunnybrook", "licence": "CC0 1.0 (Sunnybrook Cardiac Data)"})


def import_dicom(root, *, masks_from, out, config: PreprocessConfig | None = None, mask_format: str = "auto",
                 annotated: Sequence[str] = ("RV", "MYO", "LV"), link=None, source: str = "dicom", strict: bool = False,
                 overwrite: bool = False, progress: bool = True) -> ImportSummary:
    """Import a folder of DICOM series plus a mask source.

    ``root``: one sub-folder per patient holding its single-frame ``*.dcm`` images (searched recursively);
    the folder name is the patient id. ``masks_from``: one sub-folder per patient (same name, or the
    ``original_id`` of ``link``, a CSV with columns patient_id, original_id) holding either
    - contour files in the Sunnybrook convention (``mask_format="contours"``): ``IM-<s>-<NNNN>-icontour-manual.txt``
      (endocardium) and ``...-ocontour-manual.txt`` (epicardium), NNNN = the image's InstanceNumber; or
    - label masks (``mask_format="labels"``): ``<InstanceNumber>.npy`` or ``.png``, Rows×Columns, ACDC numbering
      (0 bg, 1 RV, 2 MYO, 3 LV); ``annotated`` names the structures these masks label (others unknown).
    ``"auto"`` picks contours when any ``*contour-manual.txt`` exists below ``masks_from``.
    NIfTI volumes are not paired with DICOM here: convert the series to NIfTI and use ``import folder``.
    """
    root, masks_from = Path(root), Path(masks_from)
    for p in (root, masks_from):
        if not p.is_dir():
            raise DataError(f"{p}: not a directory")
    if mask_format not in ("auto", "contours", "labels"):
        raise DataError(f"mask_format {mask_format!r}: expected 'auto', 'contours' or 'labels'")
    if mask_format == "auto":
        mask_format = "contours" if next(masks_from.rglob("*contour-manual.txt"), None) else "labels"
    names = link and read_link(Path(link))
    pdirs = sorted(d for d in root.iterdir() if d.is_dir() and next((q for q in d.rglob("*") if q.suffix.lower() == ".dcm"), None))
    if not pdirs:
        raise DataError(f"{root}: no patient folders with *.dcm files (expected <root>/<patient>/*.dcm)")
    pairs = [(d.name, d, masks_from / ((names or {}).get(d.name, d.name))) for d in pdirs]
    bits = structures_to_bits(["LV", "MYO"]) if mask_format == "contours" else structures_to_bits(annotated)
    return _run(pairs, out=out, config=config or PreprocessConfig(), strict=strict, overwrite=overwrite, progress=progress,
                source=source, mask_format=mask_format, annotated_bits=bits,
                provenance={"root": root.name, "masks_from": masks_from.name, "mask_format": mask_format})
