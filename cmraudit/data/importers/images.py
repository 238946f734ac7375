"""``cmraudit data import images``: a folder of 2-D images from any tool → one prepared dataset.

The given size is kept (no crop, no resize) unless ``size`` asks for one; intensities are scaled
to [-1, 1] by ``scale``; masks (optional) come from a parallel folder matched by file stem.
An image-only import stores all-zero masks, ``annotated`` empty on every slice and
``has_masks: false`` in dataset.json, so no stage mistakes the missing masks for background.
Every problem is one :class:`DataError` naming the file; nothing is written unless the whole
import succeeds (the dataset writer writes to a temporary directory and renames it).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError, UsageError
from ...io_guard import check_output
from ..dataset import STRUCTURE_BIT, Dataset, bits_to_structures, structures_to_bits, write_dataset
from ..image_files import (
    DEFAULT_TOLERANCE,
    file_kind,
    file_stem,
    load_palette,
    parse_labels,
    read_mask_slices,
    read_slices,
)
from ..preprocess import normalise_intensity
from ._common import ImportSummary
from .image_ids import ids_for, read_ids_csv

PERCENTILES = (1.0, 99.9)


@dataclass(frozen=True)
class Scaling:
    """How raw values become [-1, 1]: ``percentile`` (per slice 1st–99.9th, clipped), ``range`` LO HI, or ``none``."""

    kind: str = "percentile"
    lo: float | None = None
    hi: float | None = None

    @classmethod
    def parse(cls, spec: str) -> "Scaling":
        s = spec.strip()
        if s in ("percentile", "none"):
            return cls(s)
        m = re.fullmatch(r"range[:\s]\s*([-+0-9.eE]+)\s*[,\s]\s*([-+0-9.eE]+)", s)
        if m:
            try:
                lo, hi = float(m.group(1)), float(m.group(2))
            except ValueError:  # "range:.,5" matches the character class
                lo = hi = float("nan")
            if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
                return cls("range", lo, hi)
        raise UsageError(f"--scale {spec!r}: expected percentile, none or range:LO,HI with LO < HI (e.g. range:0,255)")

    def apply(self, img: np.ndarray, *, where: str) -> tuple[np.ndarray, int]:
        """(scaled float32 image, number of pixels clipped)."""
        if self.kind == "percentile":
            return normalise_intensity(img, PERCENTILES), 0
        if self.kind == "none":
            if img.min() < -1.0001 or img.max() > 1.0001:
                raise DataError(
                    f"{where}: values {img.min():.4g}..{img.max():.4g} are outside [-1, 1]; "
                    "choose --scale percentile or --scale range:LO,HI"
                )
            return np.clip(img, -1, 1).astype(np.float32), 0
        clipped = int(((img < self.lo) | (img > self.hi)).sum())
        out = (np.clip(img, self.lo, self.hi) - self.lo) / (self.hi - self.lo) * 2.0 - 1.0
        return out.astype(np.float32), clipped

    def to_dict(self) -> dict:
        d = {"kind": self.kind}
        if self.kind == "percentile":
            d["percentiles"] = list(PERCENTILES)
        if self.kind == "range":
            d.update(lo=self.lo, hi=self.hi)
        return d


def parse_size(spec: str | int | None) -> tuple[int, int] | None:
    """``N`` → (N, N); ``HxW`` → (H, W); None keeps the given size."""
    if spec is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", str(spec))
    if not m or int(m.group(1)) < 8 or (m.group(2) and int(m.group(2)) < 8):
        raise UsageError(f"--size {spec!r}: expected N or HxW (at least 8 px), e.g. 128 or 96x128")
    h = int(m.group(1))
    return h, int(m.group(2) or h)


def _resize(arr: np.ndarray, size: tuple[int, int], *, mask: bool) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if arr.shape == size:
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]
    if mask:
        return F.interpolate(t, size=size, mode="nearest")[0, 0].numpy().astype(np.uint8)
    shrink = size[0] <= arr.shape[0] and size[1] <= arr.shape[1]
    kw = {} if shrink else {"align_corners": False}
    return F.interpolate(t, size=size, mode="area" if shrink else "bilinear", **kw)[0, 0].numpy().clip(-1, 1)


def list_files(root: Path, *, what: str) -> list[Path]:
    """Image files of ``root`` (not recursive, hidden files and sub-folders ignored), sorted by name."""
    if not root.is_dir():
        raise DataError(f"{root}: {what} folder does not exist or is not a directory")
    files = sorted(p for p in root.iterdir() if not p.name.startswith(".") and not p.is_dir())
    for p in files:
        if file_kind(p) is None:
            raise DataError(
                f"{p}: not an image file (supported: .png, .nii, .nii.gz, .npy, .npz); move it out of {root}"
            )
    if not files:
        raise DataError(f"{root}: empty {what} folder (no .png, .nii, .nii.gz, .npy or .npz file)")
    stems: dict[str, Path] = {}
    for p in files:
        if file_stem(p) in stems:
            raise DataError(f"{p}: same name as {stems[file_stem(p)]} (one file per name)")
        stems[file_stem(p)] = p
    return files


def import_images(
    root: str | os.PathLike,
    *,
    out: str | os.PathLike,
    masks: str | os.PathLike | None = None,
    labels: str = "acdc",
    mask_palette: str | None = None,
    palette_tolerance: float = DEFAULT_TOLERANCE,
    id_pattern: str | None = None,
    ids: str | os.PathLike | None = None,
    scale: str = "percentile",
    size: str | int | None = None,
    source: str = "synthetic:external",
    overwrite: bool = False,
    progress: bool = True,
) -> ImportSummary:
    """Import a folder of 2-D images (PNG, NIfTI, npy/npz), optionally with masks, keeping the given size."""
    root, out = Path(root), Path(out)
    if not (math.isfinite(palette_tolerance) and palette_tolerance >= 0):
        raise UsageError(f"--palette-tolerance {palette_tolerance}: must be a finite distance ≥ 0 (0–255 RGB units)")
    scaling, target = Scaling.parse(scale), parse_size(size)
    label_map = parse_labels(labels)
    palette = load_palette(mask_palette) if mask_palette else None
    if palette is not None and masks is None:
        raise UsageError("--mask-palette needs --masks DIR (the folder of colour-coded mask PNGs)")
    if id_pattern is not None and ids is not None:
        raise UsageError("give --id-pattern or --ids, not both")
    try:
        pattern = re.compile(id_pattern) if id_pattern is not None else None
    except re.error as e:
        raise UsageError(f"--id-pattern {id_pattern!r}: not a regular expression ({e})") from e
    palette_file = mask_palette if mask_palette not in (None, "jet") else None
    _check_out(out, [("DIR", root), ("--masks", masks), ("--ids", ids), ("--mask-palette", palette_file)],
               overwrite=overwrite)
    files = list_files(root, what="image")
    mask_files: dict[str, Path] = {}
    if masks is not None:
        mask_files = {file_stem(p): p for p in list_files(Path(masks), what="mask")}
        stems = {file_stem(p) for p in files}
        for stem, p in mask_files.items():
            if stem not in stems:
                raise DataError(f"{p}: mask without an image of the same name in {root}")
    table = read_ids_csv(Path(ids)) if ids is not None else None
    annotated = (
        0 if masks is None else int(sum(STRUCTURE_BIT[s] for s in ("RV", "MYO", "LV") if _NUM[s] in label_map.values()))
    )
    imgs, msks, rows, sps, clipped, first = [], [], [], [], 0, None
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("importing images", total=len(files))
        for p in files:
            bar.advance(task)
            slices, spacing = read_slices(p)
            if masks is not None:
                mp = mask_files.get(file_stem(p))
                if mp is None:
                    raise DataError(f"{p}: image without a mask of the same name in {masks}")
                mslices = read_mask_slices(mp, labels=label_map, palette=palette, tolerance=palette_tolerance)
                if len(mslices) != len(slices):
                    raise DataError(f"{mp}: {len(mslices)} mask slice(s) for {len(slices)} image slice(s) in {p}")
            else:
                mslices = [np.zeros(s.shape, np.uint8) for s in slices]
            for k, (im, mk) in enumerate(zip(slices, mslices)):
                if mk.shape != im.shape:
                    raise DataError(
                        f"{mask_files[file_stem(p)]}: mask size {_hw(mk)} differs from its image {p} ({_hw(im)})"
                    )
                if target is None:
                    if first is None:
                        first = (p, im.shape)
                    elif im.shape != first[1]:
                        raise DataError(
                            f"{p}: size {_hw(im)} differs from {first[0].name} ({first[1][0]}×{first[1][1]}); "
                            "pass --size N (or HxW) to resize every slice to one size"
                        )
                x, c = scaling.apply(im, where=str(p))
                clipped += c
                sp = spacing or (float("nan"), float("nan"))
                if target is not None and im.shape != target:
                    sp = (sp[0] * im.shape[0] / target[0], sp[1] * im.shape[1] / target[1])
                    x, mk = _resize(x, target, mask=False), _resize(mk, target, mask=True)
                imgs.append(x.astype(np.float32))
                msks.append(mk.astype(np.uint8))
                sps.append(sp)
            rows.extend(ids_for(p, len(slices), pattern=pattern, table=table, ids_path=Path(ids) if ids else None))
    sp_arr = np.array(sps, dtype=np.float64)
    for i, r in enumerate(rows):  # explicit spacing in the ids CSV wins over the file header
        if r.get("spacing_y_mm") not in (None, "") and r.get("spacing_x_mm") not in (None, ""):
            try:
                sp_arr[i] = (float(r["spacing_y_mm"]), float(r["spacing_x_mm"]))
            except ValueError:
                raise DataError(f"{ids}: the row of patient {r['patient_id']!r}: spacing_y_mm / spacing_x_mm "
                                f"must be numbers, got {r['spacing_y_mm']!r}, {r['spacing_x_mm']!r}") from None
            if not (np.isfinite(sp_arr[i]).all() and (sp_arr[i] > 0).all()):
                raise DataError(f"{ids}: the row of patient {r['patient_id']!r}: spacing must be positive "
                                f"and finite, got {r['spacing_y_mm']!r}, {r['spacing_x_mm']!r}")
    ann = np.array([_annotated(r, annotated, ids) for r in rows], dtype=np.uint8)
    ds = Dataset(
        images=np.stack(imgs),
        masks=np.stack(msks),
        patient_id=np.array([str(r["patient_id"]) for r in rows], dtype=object),
        vendor=np.array([r["vendor"] for r in rows], dtype=object),
        frame=np.array([r["frame"] for r in rows], dtype=object),
        slice_index=np.array([int(r["slice_index"]) for r in rows], dtype=np.int64),
        source=np.array([r.get("source") or source for r in rows], dtype=object),
        annotated=ann,
        spacing_mm=sp_arr,
    )
    ds.meta = {
        "has_masks": masks is not None,
        "annotated_structures": list(bits_to_structures(int(np.bitwise_or.reduce(ann)))),
        "preprocessing": {
            "scale": scaling.to_dict(),
            "size": None if target is None else list(target),
            "crop": None,
            "clipped_pixels": clipped,
            "labels": labels if masks is not None else None,
            "mask_palette": mask_palette,
            "palette_tolerance": palette_tolerance if palette is not None else None,
        },
        "provenance": {
            "importer": "images",
            "root": str(root),
            "masks": None if masks is None else str(masks),
            "files": len(files),
            "id_pattern": id_pattern,
            "ids": None if ids is None else str(ids),
            "skipped": [],
        },
    }
    write_dataset(ds, out, overwrite=overwrite)
    return ImportSummary(out=out, patients=int(len(ds.patients)), slices=len(ds))


_NUM = {"RV": 1, "MYO": 2, "LV": 3}


def _annotated(row: dict, default: int, ids) -> int:
    """Structures labelled on a slice: the label map's (0 without masks), narrowed by the ``annotated`` of --ids."""
    given = str(row.get("annotated") or "").strip()
    if not given or default == 0:
        return default
    try:
        bits = 0 if given == "none" else structures_to_bits([s.strip() for s in given.split(";") if s.strip()])
    except DataError as e:
        raise DataError(f"{ids}: row of {row.get('patient_id')!r}: annotated {given!r} ({e})") from e
    return bits & default


def _hw(a: np.ndarray) -> str:
    return f"{a.shape[0]}×{a.shape[1]}"


def _check_out(out: Path, inputs: list[tuple[str, str | os.PathLike | None]], *, overwrite: bool) -> None:
    """OUT must not be, contain or lie inside an input (folders and files: DIR, --masks, --ids, --mask-palette);
    an existing OUT is replaced only if it is a prepared dataset."""
    check_output(out, inputs=inputs, option="--out", produces="dataset")
    if out.exists():
        if not overwrite:
            raise DataError(f"{out}: output already exists (pass --overwrite to replace it)")
        if not (out / "dataset.json").is_file():
            raise DataError(f"{out}: exists and is not a prepared dataset written by cmraudit; refusing to replace it")
