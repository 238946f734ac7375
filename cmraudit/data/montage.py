"""Sample grids: a PNG of slices with their mask overlaid (any :class:`Dataset`).

Uses matplotlib's object API with the Agg canvas, so it never touches the global backend
and works headless.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..io_guard import atomic_file, write_errors
from .dataset import Dataset

# RGBA overlay colours per label (ACDC numbering): RV blue, MYO green, LV red.
LABEL_COLOURS = {1: (0.2, 0.45, 1.0), 2: (0.1, 0.85, 0.25), 3: (1.0, 0.2, 0.15)}


def pick_indices(n_total: int, n: int, *, seed: int) -> np.ndarray:
    """``min(n, n_total)`` distinct slice indices drawn with ``seed``, in ascending order."""
    k = min(int(n), int(n_total))
    return np.sort(np.random.default_rng(seed).choice(int(n_total), size=k, replace=False))


MONTAGE_SIGNATURE = "cmraudit montage"  # in the PNG's Software text chunk


def save_montage(
    ds: Dataset,
    path: str | os.PathLike,
    *,
    n: int = 16,
    seed: int = 0,
    indices: np.ndarray | None = None,
    cols: int | None = None,
    overlay: str = "contour",
    alpha: float = 0.35,
    labels: bool = True,
    title: str | None = None,
    tile_inches: float = 1.8,
    dpi: int = 110,
) -> Path:
    """Write a grid of ``n`` slices (drawn with ``seed``, or the given ``indices``) to PNG ``path``.

    ``overlay``: ``"contour"`` (label boundaries), ``"fill"`` (translucent fill with opacity
    ``alpha``), ``"none"``, or ``"side"`` (image and mask side by side). Images are shown on
    the fixed grey scale [-1, 1], so intensity differences between tiles are real. ``labels``
    writes patient / vendor / frame / slice under each tile. Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if overlay not in ("contour", "fill", "none", "side"):
        raise UsageError(f"save_montage: overlay must be 'contour', 'fill', 'none' or 'side' (got {overlay!r})")
    if len(ds) == 0:
        raise UsageError("save_montage: the dataset is empty; nothing to draw")
    idx = pick_indices(len(ds), n, seed=seed) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= len(ds):
        raise UsageError(f"save_montage: indices must lie in [0, {len(ds)}) (got {idx.tolist()[:8]}…)")
    per = 2 if overlay == "side" else 1
    k = len(idx)
    cols = cols or max(1, int(math.ceil(math.sqrt(k * (1 if per == 1 else 0.5)))))
    rows = int(math.ceil(k / cols))
    fig = Figure(figsize=(cols * per * tile_inches, rows * (tile_inches + (0.25 if labels else 0))), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols * per, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for j, i in enumerate(idx):
        r, c = divmod(j, cols)
        img = np.asarray(ds.images[i], dtype=np.float32)
        msk = np.asarray(ds.masks[i])
        ax = axes[r, c * per]
        ax.imshow(img, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        if overlay == "fill":
            ax.imshow(_rgba(msk, alpha), interpolation="nearest")
        elif overlay == "contour":
            ax.imshow(_rgba(_boundaries(msk), 1.0), interpolation="nearest")
        elif overlay == "side":
            axes[r, c * per + 1].imshow(_rgba(msk, 1.0, background=(0, 0, 0, 1)), interpolation="nearest")
        if labels:
            ax.set_title(_caption(ds, int(i)), fontsize=6, pad=2)
    if title:
        fig.suptitle(title, fontsize=9)
        fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    else:
        fig.tight_layout(pad=0.3)
    path = Path(path)

    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": MONTAGE_SIGNATURE})  # a later --overwrite knows it
    return path


def _caption(ds: Dataset, i: int) -> str:
    parts = [str(ds.patient_id[i])]
    for col in ("vendor", "frame"):
        v = str(getattr(ds, col)[i])
        if v:
            parts.append(v)
    parts.append(f"s{int(ds.slice_index[i])}")
    return " ".join(parts)


def _boundaries(mask: np.ndarray) -> np.ndarray:
    """Label image keeping only pixels with a differently labelled 4-neighbour (inner edges)."""
    m = mask.astype(np.int16)
    edge = np.zeros(m.shape, bool)
    edge[1:, :] |= m[1:, :] != m[:-1, :]
    edge[:-1, :] |= m[:-1, :] != m[1:, :]
    edge[:, 1:] |= m[:, 1:] != m[:, :-1]
    edge[:, :-1] |= m[:, :-1] != m[:, 1:]
    return np.where(edge, mask, 0).astype(np.uint8)


def _rgba(mask: np.ndarray, alpha: float, background=(0, 0, 0, 0)) -> np.ndarray:
    out = np.zeros(mask.shape + (4,), np.float32)
    out[:] = background
    for lab, rgb in LABEL_COLOURS.items():
        sel = mask == lab
        out[sel, :3] = rgb
        out[sel, 3] = alpha
    return out
