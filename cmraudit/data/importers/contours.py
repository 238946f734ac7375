"""Contour files (Sunnybrook convention) → label masks.

A contour file holds one ``x y`` point per line in float pixel coordinates of the image it
belongs to, ``x`` = column and ``y`` = row. **Pixel-centre convention:** pixel ``(row r,
column c)`` has its centre at ``(x = c, y = r)``; it belongs to the structure when that
centre lies inside the closed polygon (even-odd rule, ``matplotlib.path.Path``). Sunnybrook
contours run along pixel edges (coordinates ending in .5), so this selects exactly the
pixels the expert enclosed, with no half-pixel dilation.

Masks use ACDC numbering: endocardium → LV (3), epicardium minus endocardium → MYO (2).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import DataError

LV, MYO = 3, 2
#: file names of the Sunnybrook convention: IM-0001-<NNNN>-icontour-manual.txt (NNNN = InstanceNumber)
CONTOUR_NAME = re.compile(r"^IM-\d+-(?P<num>\d+)-(?P<kind>[io])contour-manual\.txt$")
#: how far (pixels) a contour point may lie outside the image before the file is rejected
_OUTSIDE_TOLERANCE = 2.0


def read_contour(path: Path, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Points of one contour file as float64 ``[K, 2]`` (x = column, y = row).

    Raises DataError naming the file for an unreadable file, a line that is not two numbers,
    non-finite values, fewer than 3 points, or (when ``shape`` = (rows, cols) is given) points
    more than 2 pixels outside the image.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable contour file ({e})") from e
    pts = []
    for i, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}: line {i}: expected two numbers 'x y', got {line.strip()[:40]!r}")
        try:
            pts.append((float(parts[0]), float(parts[1])))
        except ValueError as e:
            raise DataError(f"{path}: line {i}: expected two numbers 'x y', got {line.strip()[:40]!r}") from e
    arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: contour has NaN or Inf coordinates")
    if len(arr) < 3:
        raise DataError(f"{path}: contour has {len(arr)} point(s); a polygon needs at least 3")
    if shape is not None:
        rows, cols = shape
        t = _OUTSIDE_TOLERANCE
        if (
            (arr[:, 0] < -t).any()
            or (arr[:, 0] > cols - 1 + t).any()
            or (arr[:, 1] < -t).any()
            or (arr[:, 1] > rows - 1 + t).any()
        ):
            raise DataError(
                f"{path}: contour points outside the {rows}×{cols} image "
                f"(x {arr[:, 0].min():.1f}..{arr[:, 0].max():.1f}, y {arr[:, 1].min():.1f}..{arr[:, 1].max():.1f}); "
                "is it paired with the right image?"
            )
    return arr


def fill_polygon(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask ``[rows, cols]``: pixels whose centre (x = col, y = row) is inside the polygon."""
    from matplotlib.path import Path as MplPath

    rows, cols = shape
    out = np.zeros((rows, cols), dtype=bool)
    x0 = max(int(np.floor(points[:, 0].min())), 0)
    x1 = min(int(np.ceil(points[:, 0].max())), cols - 1)
    y0 = max(int(np.floor(points[:, 1].min())), 0)
    y1 = min(int(np.ceil(points[:, 1].max())), rows - 1)
    if x1 < x0 or y1 < y0:
        return out
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    inside = MplPath(points, closed=False).contains_points(np.column_stack([xx.ravel(), yy.ravel()]))
    out[y0 : y1 + 1, x0 : x1 + 1] = inside.reshape(yy.shape)
    return out


def check_epicardium(lv: np.ndarray, wall: np.ndarray, *, where: str, max_outside: float = 0.10) -> None:
    """DataError when more than ``max_outside`` of the LV cavity lies outside the epicardium.

    Catches an epicardial contour paired with the wrong image (e.g. copied from another patient).
    """
    outside = float((lv & ~wall).sum()) / float(max(lv.sum(), 1))
    if outside > max_outside:
        raise DataError(
            f"{where}: {outside:.0%} of the endocardium lies outside this epicardium "
            f"(expected <= {max_outside:.0%}; contour mismatched with its image?)"
        )


def contours_to_mask(
    endo: np.ndarray, epi: np.ndarray | None, shape: tuple[int, int], *, where: str = ""
) -> np.ndarray:
    """uint8 mask: LV (3) inside the endocardium, MYO (2) inside the epicardium but outside it.

    Without an epicardium the pixels outside the endocardium are 0 — the caller must record
    MYO as *unknown* for that slice (``annotated`` without the MYO bit), not as background.
    An empty endocardium, or one lying mostly (> 10 %) outside the epicardium, is a DataError.
    """
    lv = fill_polygon(endo, shape)
    if not lv.any():
        raise DataError(f"{where}: endocardial contour encloses no pixel centre")
    mask = np.zeros(shape, dtype=np.uint8)
    if epi is not None:
        wall = fill_polygon(epi, shape)
        check_epicardium(lv, wall, where=where)
        mask[wall & ~lv] = MYO
    mask[lv] = LV
    return mask


def find_contours(folder: Path) -> dict[int, dict[str, Path]]:
    """``{image number: {"i": endocardium file, "o": epicardium file}}`` below ``folder`` (recursive)."""
    found: dict[int, dict[str, Path]] = {}
    for p in sorted(Path(folder).rglob("*contour-manual.txt")):
        m = CONTOUR_NAME.match(p.name)
        if not m:
            continue
        num, kind = int(m.group("num")), m.group("kind")
        entry = found.setdefault(num, {})
        if kind in entry:
            raise DataError(
                f"{p}: a second {'endo' if kind == 'i' else 'epi'}cardial contour for image {num} (first: "
                f"{entry[kind]})"
            )
        entry[kind] = p
    return found
