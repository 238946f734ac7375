"""Constants and pure helpers of the prepared-dataset format (docs/data-format.md): labels, structure bits, the
index columns, the content fingerprint, the atomic directory swap. :mod:`cmraudit.data.dataset` re-exports them."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DataError
from ..io_guard import replace_dir

FORMAT_VERSION = 1
LABELS = {0: "background", 1: "RV", 2: "MYO", 3: "LV"}
STRUCTURES = ("RV", "MYO", "LV")  # label value = position + 1
STRUCTURE_BIT = {"RV": 1, "MYO": 2, "LV": 4}
ALL_STRUCTURES = 7
INDEX_COLUMNS = (
    "patient_id",
    "vendor",
    "frame",
    "slice_index",
    "source",
    "annotated",
    "spacing_y_mm",
    "spacing_x_mm",
)


def structures_to_bits(names: Iterable[str]) -> int:
    """Bit mask of annotated structures (RV=1, MYO=2, LV=4)."""
    bits = 0
    for name in names:
        if name not in STRUCTURE_BIT:
            raise DataError(f"unknown structure {name!r}; expected one of {STRUCTURES}")
        bits |= STRUCTURE_BIT[name]
    return bits


def bits_to_structures(bits: int) -> tuple[str, ...]:
    return tuple(s for s in STRUCTURES if int(bits) & STRUCTURE_BIT[s])


def fingerprint_arrays(images: np.ndarray, masks: np.ndarray) -> str:
    """sha256 over shape, dtype and bytes of images and masks (chunked, memmap friendly)."""
    h = hashlib.sha256()
    for arr in (images, masks):
        h.update(f"{arr.dtype.str}{tuple(arr.shape)}".encode())
        flat = arr.reshape(len(arr), int(np.prod(arr.shape[1:]))) if arr.ndim > 1 else arr  # also with 0 rows
        step = max(1, (64 << 20) // max(1, flat[0].nbytes if len(flat) else 1))
        for i in range(0, len(flat), step):
            h.update(np.ascontiguousarray(flat[i : i + step]).tobytes())
    return "sha256:" + h.hexdigest()


def swap_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished directory ``tmp`` to ``path`` (see :func:`cmraudit.io_guard.replace_dir`)."""
    replace_dir(tmp, path, kind="dataset")


def _fmt_spacing(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.6g}"
