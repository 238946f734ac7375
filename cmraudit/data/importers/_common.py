"""What every importer shares: per-patient slice records, skip-or-fail policy, atomic write."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ...errors import DataError
from ..dataset import ALL_STRUCTURES, Dataset, write_dataset
from ..preprocess import PreprocessConfig, preprocess_slice


@dataclass
class SliceRecord:
    """One labelled 2-D slice before preprocessing (raw intensities, ACDC-numbered mask)."""

    image: np.ndarray
    mask: np.ndarray
    frame: str
    slice_index: int
    spacing_mm: tuple[float, float] | None = None
    annotated: int = ALL_STRUCTURES


@dataclass
class PatientRecords:
    patient_id: str
    vendor: str
    slices: list[SliceRecord]
    source_file: str = ""


@dataclass
class ImportSummary:
    """What an import produced: counts, and every skipped patient or file with its reason."""

    out: Path
    patients: int
    slices: int
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "patients": self.patients,
            "slices": self.slices,
            "skipped": [list(s) for s in self.skipped],
        }


def check_slice(rec: SliceRecord, *, where: str) -> None:
    """Raise DataError naming ``where`` for a bad slice (shape mismatch, NaN/Inf, labels outside 0..3)."""
    if rec.image.shape != rec.mask.shape:
        raise DataError(f"{where}: image shape {rec.image.shape} and mask shape {rec.mask.shape} differ")
    if not np.isfinite(rec.image).all():
        raise DataError(f"{where}: image contains NaN or Inf")
    m = rec.mask
    if m.size and (m.min() < 0 or m.max() > 3 or not np.all(np.equal(np.mod(m, 1), 0))):
        raise DataError(f"{where}: mask labels outside 0..3 (found {np.unique(m)[:8].tolist()})")


def assemble(
    loaders: Iterable[tuple[str, Callable[[], PatientRecords]]],
    *,
    out: str | os.PathLike,
    config: PreprocessConfig,
    strict: bool,
    overwrite: bool,
    source: str,
    provenance: dict,
    progress: bool = True,
    total: int | None = None,
    extra_meta: dict | None = None,
) -> ImportSummary:
    """Load each patient (``loaders``: (label, thunk)), preprocess, and write one prepared dataset.

    A loader that raises DataError is skipped and listed (or re-raised when ``strict``).
    Duplicate patient ids and an import with no usable patient are errors.
    Nothing is written unless the whole import succeeds.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out}: output already exists (pass --overwrite to replace it)")
    skipped: list[tuple[str, str]] = []
    parts: list[Dataset] = []
    seen: dict[str, str] = {}
    from rich.progress import Progress

    items = list(loaders)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"importing {source}", total=total or len(items))
        for label, load in items:
            bar.advance(task)
            try:
                rec = load()
                if rec.patient_id in seen:
                    raise DataError(
                        f"{label}: duplicate patient id {rec.patient_id!r} (also used by {seen[rec.patient_id]})"
                    )
                if not rec.slices:
                    raise DataError(f"{label}: patient {rec.patient_id} has no labelled slices")
                imgs, msks, frames, sidx, sps, ann = [], [], [], [], [], []
                for s in rec.slices:
                    check_slice(s, where=f"{label} ({s.frame}, slice {s.slice_index})")
                    im, mk, sp = preprocess_slice(s.image, s.mask, config, s.spacing_mm)
                    imgs.append(im)
                    msks.append(mk)
                    frames.append(s.frame)
                    sidx.append(s.slice_index)
                    sps.append(sp)
                    ann.append(s.annotated)
            except DataError as e:
                if strict or "duplicate patient id" in str(e):
                    raise
                skipped.append((label, str(e)))
                continue
            seen[rec.patient_id] = label
            n = len(imgs)
            parts.append(
                Dataset(
                    images=np.stack(imgs).astype(np.float32),
                    masks=np.stack(msks).astype(np.uint8),
                    patient_id=np.array([rec.patient_id] * n, dtype=object),
                    vendor=np.array([rec.vendor] * n, dtype=object),
                    frame=np.array(frames, dtype=object),
                    slice_index=np.array(sidx),
                    source=np.array([source] * n, dtype=object),
                    annotated=np.array(ann, dtype=np.uint8),
                    spacing_mm=np.array(sps, dtype=np.float64),
                )
            )
    if not parts:
        reasons = "; ".join(f"{w}: {r}" for w, r in skipped[:3])
        raise DataError(f"no usable patient found ({len(skipped)} skipped{': ' + reasons if reasons else ''})")
    ds = Dataset.concat(parts)
    ds.meta = {
        "annotated_structures": ["RV", "MYO", "LV"],
        **(extra_meta or {}),
        "preprocessing": config.to_dict(),
        "provenance": {"importer": source, **provenance, "skipped": [list(s) for s in skipped]},
    }
    write_dataset(ds, out, overwrite=overwrite)
    return ImportSummary(out=out, patients=len(parts), slices=len(ds), skipped=skipped)
