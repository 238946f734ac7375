"""Artefacts of the copy search written next to the report (local only: they show real slices)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..io_guard import atomic_file


def write_per_slice_csv(per_slice: dict, path: Path) -> Path:
    """One row per synthetic slice: d1, d2, nndr, carlini, nearest train index and patient, copy flag."""
    cols = ["d1", "d2", "nndr", "carlini", "nn_index", "nn_patient", "copy", "d_holdout"]
    n = len(per_slice["d1"])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["synthetic_index", *cols])
        for i in range(n):
            row = [i]
            for c in cols:
                v = per_slice[c][i]
                row.append(
                    f"{v:.6g}"
                    if isinstance(v, (float, np.floating))
                    else (int(v) if isinstance(v, (np.bool_, bool)) else v)
                )
            w.writerow(row)
    return path


def write_copy_flags_csv(flags: dict[str, np.ndarray], path: Path) -> Path:
    """One row per synthetic slice: the copy flag of each feature space and ``copy_any_space``."""
    names = list(flags)
    n = len(next(iter(flags.values())))
    anyf = np.zeros(n, bool)
    for v in flags.values():
        anyf |= np.asarray(v, bool)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["synthetic_index", *[f"copy_{k}" for k in names], "copy_any_space"])
        for i in range(n):
            w.writerow([i, *[int(bool(flags[k][i])) for k in names], int(anyf[i])])
    return path


def save_top_pairs(*, synthetic_images: np.ndarray, train_images: np.ndarray, per_slice: dict, path: Path, k: int = 12,
                   title: str = "") -> Path | None:
    """Grid of the k synthetic slices closest to a training slice (top row) above that slice (bottom row).

    Contains real training images: keep it in the local output folder; the shared HTML report
    shows it only with --include-real-images.
    """
    n = len(per_slice["d1"])
    if n == 0:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    order = np.argsort(per_slice["d1"], kind="stable")[: min(k, n)]
    fig, axes = plt.subplots(2, len(order), figsize=(1.6 * len(order), 3.6), squeeze=False)
    for j, i in enumerate(order):
        for r, img in enumerate((synthetic_images[i], train_images[per_slice["nn_index"][i]])):
            ax = axes[r, j]
            ax.imshow(np.asarray(img), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        flag = "COPY " if per_slice["copy"][i] else ""
        axes[0, j].set_title(f"{flag}d={per_slice['d1'][i]:.3g}", fontsize=7)
        axes[1, j].set_title(str(per_slice["nn_patient"][i])[:12], fontsize=6)
    axes[0, 0].set_ylabel("synthetic", fontsize=8)
    axes[1, 0].set_ylabel("nearest train", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:  # disk full / read-only: one DataError naming the path (exit 4)
            fig.savefig(tmp, dpi=80, format="png")
    finally:
        plt.close(fig)
    return path
