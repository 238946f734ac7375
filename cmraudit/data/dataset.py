"""The prepared-dataset format (docs/design.md § 4): the one format every stage reads and writes.

A prepared dataset is a directory::

    images.npy    float32 [N, H, W], values in [-1, 1]
    masks.npy     uint8   [N, H, W], 0 bg, 1 RV, 2 MYO, 3 LV (ACDC numbering)
    index.csv     one row per slice: patient_id, vendor, frame, slice_index, source,
                  annotated (structures labelled on that slice, e.g. "RV;MYO;LV"; "none" for an image-only slice),
                  spacing_y_mm, spacing_x_mm (empty when unknown)
    dataset.json  format version, shape, labels, preprocessing, fingerprint, provenance

Arrays are read memory-mapped; the index is read and written by :mod:`cmraudit.data.index_csv`. Writing goes to
a temporary sibling directory that is renamed into place, so a crash never leaves a half-written dataset behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError
from ..io_guard import write_errors
from .format import (  # noqa: F401 - re-exported: the format's constants and helpers live in format.py
    ALL_STRUCTURES,
    FORMAT_VERSION,
    INDEX_COLUMNS,
    LABELS,
    STRUCTURE_BIT,
    STRUCTURES,
    _fmt_spacing,
    bits_to_structures,
    fingerprint_arrays,
    structures_to_bits,
    swap_into_place,
)
from .index_csv import read_index, write_index


@dataclass
class Dataset:
    """A set of 2-D short-axis slices with masks and a per-slice index.

    ``images`` float32 [N, H, W] in [-1, 1]; ``masks`` uint8 [N, H, W] in ACDC numbering.
    ``patient_id`` is the unit of membership for every privacy computation.
    ``annotated`` is a per-slice bit mask of labelled structures (RV=1, MYO=2, LV=4):
    a structure not annotated on a slice is *unknown*, not background.
    """

    images: np.ndarray
    masks: np.ndarray
    patient_id: np.ndarray
    vendor: np.ndarray = None  # type: ignore[assignment]
    frame: np.ndarray = None  # type: ignore[assignment]
    slice_index: np.ndarray = None  # type: ignore[assignment]
    source: np.ndarray = None  # type: ignore[assignment]
    annotated: np.ndarray = None  # type: ignore[assignment]
    spacing_mm: np.ndarray = None  # type: ignore[assignment]  # float [N, 2] (row, col); NaN unknown
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        self.patient_id = np.asarray(self.patient_id, dtype=object)
        if self.vendor is None:
            self.vendor = np.full(n, "", dtype=object)
        if self.frame is None:
            self.frame = np.full(n, "", dtype=object)
        if self.slice_index is None:
            self.slice_index = np.arange(n, dtype=np.int64)
        if self.source is None:
            self.source = np.full(n, "real", dtype=object)
        if self.annotated is None:
            self.annotated = np.full(n, ALL_STRUCTURES, dtype=np.uint8)
        if self.spacing_mm is None:
            self.spacing_mm = np.full((n, 2), np.nan, dtype=np.float64)
        self.vendor = np.asarray(self.vendor, dtype=object)
        self.frame = np.asarray(self.frame, dtype=object)
        self.slice_index = np.asarray(self.slice_index, dtype=np.int64)
        self.source = np.asarray(self.source, dtype=object)
        self.annotated = np.asarray(self.annotated, dtype=np.uint8)
        self.spacing_mm = np.asarray(self.spacing_mm, dtype=np.float64).reshape(n, 2)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self, *, name: str = "dataset") -> None:
        """Collect every format problem and raise one DataError."""
        problems = _array_problems(self.images, self.masks)
        n = len(self.images)
        for col in ("patient_id", "vendor", "frame", "slice_index", "source", "annotated"):
            if len(getattr(self, col)) != n:
                problems.append(f"index column {col} has {len(getattr(self, col))} rows, expected {n}")
        if problems:
            raise DataError(f"{name}: " + "; ".join(problems))

    def check_values(self, *, name: str = "dataset") -> None:
        """Full value check (reads every pixel): finite images in [-1, 1], labels in 0..3."""
        problems = []
        chunk = 4096
        for i in range(0, len(self), chunk):
            im = np.asarray(self.images[i : i + chunk])
            if not np.isfinite(im).all():
                problems.append("images contain NaN or Inf")
                break
            if im.size and (im.min() < -1.0001 or im.max() > 1.0001):
                problems.append(f"image values outside [-1, 1] (min {im.min():.3f}, max {im.max():.3f})")
                break
        for i in range(0, len(self), chunk):
            mx = int(np.asarray(self.masks[i : i + chunk]).max(initial=0))
            if mx > 3:
                problems.append(f"mask labels outside 0..3 (found {mx})")
                break
        if problems:
            raise DataError(f"{name}: " + "; ".join(problems))

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        """One line: size, patients, slice shape, vendors and sources (never the arrays)."""
        def few(col) -> str:
            vals = sorted({str(v) for v in col} - {""})
            return ",".join(vals[:3]) + (f",…(+{len(vals) - 3})" if len(vals) > 3 else "") if vals else "-"
        h, w = self.shape if self.images.ndim == 3 else (0, 0)
        return (f"Dataset({len(self)} slices, {len(self.patients)} patients, {h}x{w}, vendors {few(self.vendor)}, "
                f"source {few(self.source)})")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def patients(self) -> np.ndarray:
        """Unique patient ids in order of first appearance."""
        _, first = np.unique(self.patient_id.astype(str), return_index=True)
        return self.patient_id[np.sort(first)]

    def patient_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(unique patients, integer code per slice) — for patient-level grouping."""
        ids = self.patient_id.astype(str)
        uniq, inv = np.unique(ids, return_inverse=True)
        return uniq, inv

    def subset(self, idx: Sequence[int] | np.ndarray) -> "Dataset":
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return Dataset(
            images=np.asarray(self.images[idx]),
            masks=np.asarray(self.masks[idx]),
            patient_id=self.patient_id[idx],
            vendor=self.vendor[idx],
            frame=self.frame[idx],
            slice_index=self.slice_index[idx],
            source=self.source[idx],
            annotated=self.annotated[idx],
            spacing_mm=self.spacing_mm[idx],
            meta=dict(self.meta),
        )

    def select_patients(self, patient_ids: Iterable[str]) -> "Dataset":
        wanted = {str(p) for p in patient_ids}
        return self.subset(np.array([str(p) in wanted for p in self.patient_id], dtype=bool))

    def fingerprint(self) -> str:
        return fingerprint_arrays(np.asarray(self.images), np.asarray(self.masks))

    @staticmethod
    def concat(parts: Sequence["Dataset"]) -> "Dataset":
        if not parts:
            raise DataError("cannot concatenate zero datasets")
        return Dataset(
            images=np.concatenate([np.asarray(p.images) for p in parts]),
            masks=np.concatenate([np.asarray(p.masks) for p in parts]),
            patient_id=np.concatenate([p.patient_id for p in parts]),
            vendor=np.concatenate([p.vendor for p in parts]),
            frame=np.concatenate([p.frame for p in parts]),
            slice_index=np.concatenate([p.slice_index for p in parts]),
            source=np.concatenate([p.source for p in parts]),
            annotated=np.concatenate([p.annotated for p in parts]),
            spacing_mm=np.concatenate([p.spacing_mm for p in parts]),
            meta=dict(parts[0].meta),
        )

    def summary(self) -> dict:
        vendors = sorted({str(v) for v in self.vendor if str(v)})
        ann = sorted({int(a) for a in self.annotated})
        labelled = [s for s in STRUCTURES if any(a & STRUCTURE_BIT[s] for a in ann)]
        sp = self.spacing_mm[np.isfinite(self.spacing_mm).all(axis=1)]
        return {
            "patients": int(len(self.patients)),
            "slices": int(len(self)),
            "shape": list(self.shape),
            "vendors": vendors,
            "labels": labelled,
            "spacing_mm": None if len(sp) == 0 else [float(sp.min()), float(sp.max())],
        }


# ---------------------------------------------------------------------- I/O
def _array_problems(im: np.ndarray, mk: np.ndarray) -> list[str]:
    """Shape and dtype problems of the images and masks arrays."""
    problems: list[str] = []
    if im.ndim != 3:
        problems.append(f"images must be [N, H, W], got shape {im.shape}")
    if mk.shape != im.shape:
        problems.append(f"masks shape {mk.shape} differs from images shape {im.shape}")
    if im.dtype != np.float32:
        problems.append(f"images dtype must be float32, got {im.dtype}")
    if mk.dtype != np.uint8:
        problems.append(f"masks dtype must be uint8, got {mk.dtype}")
    return problems


def write_dataset(
    ds: Dataset, path: str | os.PathLike, *, overwrite: bool = False, extra_meta: dict | None = None
) -> Path:
    """Write ``ds`` to directory ``path`` atomically (temp dir + rename). Returns the path."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise DataError(f"{path}: output already exists (pass overwrite / --overwrite to replace it)")
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        _write_into(ds, tmp, path, extra_meta)
    return path


def _write_into(ds: Dataset, tmp: Path, path: Path, extra_meta: dict | None) -> None:
    try:
        images = np.ascontiguousarray(ds.images, dtype=np.float32)
        masks = np.ascontiguousarray(ds.masks, dtype=np.uint8)
        np.save(tmp / "images.npy", images)
        np.save(tmp / "masks.npy", masks)
        write_index(tmp / "index.csv", ds)
        meta = dict(ds.meta)
        if extra_meta:
            meta.update(extra_meta)
        meta.update(
            {
                "format": "cmraudit-prepared",
                "format_version": FORMAT_VERSION,
                "shape": [int(len(ds)), *map(int, ds.shape)],
                "labels": {str(k): v for k, v in LABELS.items()},
                "label_convention": "ACDC",
                "fingerprint": fingerprint_arrays(images, masks),
                "summary": ds.summary(),
            }
        )
        with open(tmp / "dataset.json", "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True, default=str)
        swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_dataset(path: str | os.PathLike, *, mmap: bool = True, verify: bool = False) -> Dataset:
    """Read a prepared dataset (memory-mapped by default).

    ``verify=True`` recomputes the fingerprint and checks values (reads every pixel).
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a prepared dataset directory (it does not exist or is not a directory)")
    for name in ("images.npy", "masks.npy", "index.csv", "dataset.json"):
        if not (path / name).is_file():
            raise DataError(f"{path / name}: missing; {path} is not a prepared dataset (see docs/data-format.md)")
    try:
        meta = json.loads((path / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path / 'dataset.json'}: unreadable JSON ({e})") from e
    if not isinstance(meta, dict):
        raise DataError(f"{path / 'dataset.json'}: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(
            f"{path / 'dataset.json'}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
        )
    try:
        images = np.load(path / "images.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        masks = np.load(path / "masks.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read arrays ({e})") from e
    for name, arr in (("images.npy", images), ("masks.npy", masks)):
        if arr.ndim != 3:
            raise DataError(f"{path / name}: expected a [N, H, W] array, got shape {arr.shape}")
    problems = _array_problems(images, masks)  # before Dataset(), whose own check cannot name the folder
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems))
    index = read_index(path, len(images))
    meta.pop("summary", None)
    ds = Dataset(images=images, masks=masks, meta=meta, **index)
    ds.validate(name=str(path))
    if verify:
        ds.check_values(name=str(path))
        fp = ds.fingerprint()
        if meta.get("fingerprint") and fp != meta["fingerprint"]:
            raise DataError(
                f"{path}: fingerprint mismatch (dataset.json says {meta['fingerprint']}, arrays hash to {fp})"
            )
    return ds
