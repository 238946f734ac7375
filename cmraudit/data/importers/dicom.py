"""DICOM series + contour / label-mask import (Sunnybrook and a generic layout).

Slice order, cardiac phase and spacing come from the headers (see ``dicom_series``); masks from
contour files (``contours``: x = column, y = row, pixel centres at integer coordinates) or from
per-image label masks.

Partial labels: contours give LV on every contoured image and MYO only where a usable epicardium was
drawn; RV is never annotated. Each slice's ``annotated`` bits say which structures are known, and
``dataset.json`` lists ``annotated_structures`` / ``unknown_structures`` for the whole set.

Bad input (non-strict): an unreadable or truncated DICOM, a DICOM without pixel data, a contour
with fewer than 3 points and a contour whose image is missing are each skipped and listed in the
summary (``skipped``: (file, reason)); an unusable epicardium leaves MYO unknown on its slice and is
listed too. With ``strict=True`` the first problem raises DataError naming the file. Nothing is
written unless the whole import succeeds (atomic write).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import DataError
from ..dataset import STRUCTURES, Dataset, bits_to_structures, structures_to_bits, write_dataset
from ..preprocess import PreprocessConfig, preprocess_slice
from ._common import ImportSummary, PatientRecords, SliceRecord, check_slice
from .contours import check_epicardium, contours_to_mask, fill_polygon, find_contours, read_contour
from .dicom_series import DicomImage, orderings, read_header, read_pixels

__all__ = ["import_dicom", "import_sunnybrook", "read_link", "load_patient", "read_header", "read_pixels"]


class _Problems:
    """Collects file-level problems (non-strict) or raises the first one (strict)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.items: list[tuple[str, str]] = []

    def add(self, err: DataError, who: Path | str) -> None:
        if self.strict:
            raise err
        msg = str(err)
        self.items.append((str(who), msg[len(f"{who}: "):] if msg.startswith(f"{who}: ") else msg))


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


# ------------------------------------------------------------------ mask sources
def _masks_from_contours(entry: dict[str, Path], img: DicomImage, problems: _Problems) -> tuple[np.ndarray, int]:
    """LV from the endocardium; MYO only from a usable epicardium (a bad one is listed and MYO left unknown)."""
    if "i" not in entry:
        raise DataError(f"{entry['o']}: epicardial contour without an endocardial contour (MYO needs both)")
    endo = read_contour(entry["i"], shape=img.shape)
    epi = None
    if "o" in entry:
        try:
            epi = read_contour(entry["o"], shape=img.shape)
            check_epicardium(fill_polygon(endo, img.shape), fill_polygon(epi, img.shape), where=str(entry["o"]))
        except DataError as e:
            problems.add(e if problems.strict else DataError(f"{e}; MYO left unknown on this slice"), entry["o"])
            epi = None
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
        raise DataError(
            f"{p}: label mask shape {arr.shape} differs from its DICOM {img.path.name} ({img.shape}, rows×columns)"
        )
    if not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < 0 or arr.max(initial=0) > 3:
        raise DataError(f"{p}: label mask must hold integers 0..3 (ACDC numbering: 1 RV, 2 MYO, 3 LV)")
    if not arr.any():
        raise DataError(f"{p}: label mask is empty (no structure labelled); remove it or label the image")
    return arr.astype(np.uint8), bits


# ------------------------------------------------------------------ one patient
def load_patient(dicom_dir: Path, mask_dir: Path, *, patient_id: str, mask_format: str, annotated_bits: int,
                 problems: _Problems) -> tuple[PatientRecords, int]:
    """Labelled slices of one patient and the number of unlabelled DICOMs ignored."""
    images, bad_stems = scan_series(dicom_dir, problems)
    if mask_format == "contours":
        entries = find_contours(mask_dir)
        mask_fn = lambda e, im: _masks_from_contours(e, im, problems)  # noqa: E731
    else:
        entries = _find_label_masks(mask_dir)
        mask_fn = lambda e, im: _masks_from_labels(e, im, annotated_bits)  # noqa: E731
    if not images:
        raise DataError(f"{dicom_dir}: no readable DICOM (*.dcm) image")
    slice_of, phase_of = orderings(list(images.values()))
    slices: list[SliceRecord] = []
    for num in sorted(entries):
        entry = entries[num]
        first = entry.get("i") or entry.get("o") or entry.get("m")
        img = images.get(num)
        if img is None:
            if str(num) in bad_stems or f"{num:04d}" in bad_stems:
                continue  # its DICOM was unreadable and is already listed
            problems.add(
                DataError(f"{first}: points at image {num}, but {dicom_dir} has no DICOM with InstanceNumber {num}"),
                first,
            )
            continue
        try:
            mask, bits = mask_fn(entry, img)
        except DataError as e:
            problems.add(e, first)
            continue
        try:
            rec = SliceRecord(image=read_pixels(img), mask=mask, frame=str(phase_of[num]) if phase_of[num] >= 0 else "",
                              slice_index=slice_of[img.location_mm], spacing_mm=img.spacing_mm, annotated=bits)
            check_slice(rec, where=str(img.path))
        except DataError as e:
            problems.add(e, img.path)
            continue
        slices.append(rec)
    unlabelled = len(set(images) - set(entries))
    slices.sort(key=lambda r: (r.slice_index, int(r.frame or -1)))
    vendors = sorted({im.vendor for im in images.values() if im.vendor})
    return PatientRecords(patient_id=patient_id, vendor=vendors[0] if len(vendors) == 1 else ";".join(vendors),
                          slices=slices, source_file=str(dicom_dir)), unlabelled


# ------------------------------------------------------------------ assembly
def _assemble(
    patients: list[PatientRecords], *, out: Path, config: PreprocessConfig, source: str, meta: dict
) -> Dataset:
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
        ds.meta["notes"] = (
            f"{', '.join(ds.meta['unknown_structures'])} not annotated in this data: unknown, not background; "
            "metrics score only annotated structures (per slice: index.csv column 'annotated')."
        )
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
            link: dict[str, str] = {}
            for i, r in enumerate(reader, start=2):
                pid, orig = (r.get("patient_id") or "").strip(), (r.get("original_id") or "").strip()
                if not pid:
                    continue
                if pid in link:
                    raise DataError(f"{path}: line {i}: patient_id {pid!r} appears twice; "
                                    "each patient must have exactly one row")
                if orig in link.values():
                    raise DataError(f"{path}: line {i}: original_id {orig!r} is linked to two patients; "
                                    "one patient's contours would be joined to another's images")
                link[pid] = orig
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: unreadable link file ({e})") from e
    if not link:
        raise DataError(f"{path}: link file has no patient rows")
    return link


def import_sunnybrook(
    root,
    *,
    out,
    config: PreprocessConfig | None = None,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> ImportSummary:
    """Import the Sunnybrook Cardiac Data layout: ``link.csv``, ``dicoms/<patient_id>/*.dcm``,
    ``contourfiles/<original_id>/{i,o}-contours/IM-0001-<NNNN>-{i,o}contour-manual.txt`` (NNNN = InstanceNumber).

    Only contoured images are imported. Endocardium → LV (3); epicardium minus endocardium → MYO (2)
    where an epicardium exists (else MYO unknown on that slice); RV is never annotated.
    Patient id = ``patient_id`` of link.csv; vendor from the Manufacturer tag; source ``"sunnybrook"``.
    """
    root = Path(root)
    for need in ("link.csv", "dicoms", "contourfiles"):
        if not (root / need).exists():
            raise DataError(
                f"{root}: not a Sunnybrook folder (missing {need}; expected link.csv, dicoms/, contourfiles/)"
            )
    link = read_link(root / "link.csv")
    pairs = [(pid, root / "dicoms" / pid, root / "contourfiles" / orig) for pid, orig in sorted(link.items())]
    missing = [str(d) for _, d, _ in pairs if not d.is_dir()]
    if missing and strict:
        raise DataError(f"{missing[0]}: DICOM folder listed in link.csv does not exist")
    return _run(
        pairs,
        out=out,
        config=config or PreprocessConfig(),
        strict=strict,
        overwrite=overwrite,
        progress=progress,
        source="sunnybrook",
        mask_format="contours",
        annotated_bits=structures_to_bits(["LV", "MYO"]),
        provenance={"root": root.name, "layout": "sunnybrook", "licence": "CC0 1.0 (Sunnybrook Cardiac Data)"},
    )


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
    pdirs = sorted(
        d for d in root.iterdir() if d.is_dir() and next((q for q in d.rglob("*") if q.suffix.lower() == ".dcm"), None)
    )
    if not pdirs:
        raise DataError(f"{root}: no patient folders with *.dcm files (expected <root>/<patient>/*.dcm)")
    pairs = [(d.name, d, masks_from / ((names or {}).get(d.name, d.name))) for d in pdirs]
    bits = structures_to_bits(["LV", "MYO"]) if mask_format == "contours" else structures_to_bits(annotated)
    return _run(
        pairs,
        out=out,
        config=config or PreprocessConfig(),
        strict=strict,
        overwrite=overwrite,
        progress=progress,
        source=source,
        mask_format=mask_format,
        annotated_bits=bits,
        provenance={"root": root.name, "masks_from": masks_from.name, "mask_format": mask_format},
    )
