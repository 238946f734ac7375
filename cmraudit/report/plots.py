"""Plots of the report as PNG bytes (matplotlib Agg; no torch, no display).

Every function takes plain numbers/arrays (already in report.json or a prepared
dataset) and returns PNG bytes, so the HTML report and ``compare`` embed them inline.
"""
from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np


class _Pyplot:
    """``matplotlib.pyplot`` (Agg backend), imported on first use so that importing the report package is light."""

    def __getattr__(self, name: str):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot

        globals()["plt"] = pyplot  # later look-ups go straight to pyplot
        return getattr(pyplot, name)


plt = _Pyplot()

# mask overlay colours (ACDC numbering), the same as cmraudit.data.montage: RV blue, MYO green, LV red
MASK_COLOURS = {1: (0.2, 0.45, 1.0), 2: (0.1, 0.85, 0.25), 3: (1.0, 0.2, 0.15)}
MASK_ALPHA = 0.45
_DPI = 100


def png_bytes(fig) -> bytes:
    """Render a figure to PNG bytes and close it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _mask_cmap():
    from matplotlib.colors import ListedColormap

    cols = [(0, 0, 0, 0)] + [(*MASK_COLOURS[k], MASK_ALPHA) for k in (1, 2, 3)]
    return ListedColormap(cols)


def sample_grid(
    images: np.ndarray,
    masks: np.ndarray | None = None,
    *,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    cell_inches: float = 1.1,
) -> bytes:
    """Grid of slices (values in [-1, 1], grey) with the masks overlaid in colour (RV blue, MYO green, LV red)."""
    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell_inches, nrows * cell_inches + (0.3 if title else 0)), squeeze=False)
    cmap = _mask_cmap()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        if masks is not None:
            ax.imshow(np.asarray(masks[i]), cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return png_bytes(fig)


def roc_plot(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str, floor: float = 1e-3) -> bytes:
    """ROC curves on log–log axes (low false-positive rates are what matter); chance = diagonal.

    FPR/TPR values of 0 are drawn at ``floor`` so the curve stays visible on log axes.
    """
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    grid = np.logspace(np.log10(floor), 0, 100)
    ax.plot(grid, grid, ls="--", c="0.6", lw=1, label="chance")
    for name, (fpr, tpr) in curves.items():
        f = np.clip(np.asarray(fpr, dtype=float), floor, 1)
        t = np.clip(np.asarray(tpr, dtype=float), floor, 1)
        ax.step(f, t, where="post", lw=1.5, label=name)
    ax.axvline(0.01, c="0.8", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1.05)
    ax.set_xlabel("false-positive rate (non-members accused)")
    ax.set_ylabel("true-positive rate (members found)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return png_bytes(fig)


def dcr_histogram(bins: Sequence[float], train: Sequence[float], holdout: Sequence[float], *, title: str, threshold: float | None = None) -> bytes:
    """Histograms of distances to the closest record: synthetic→train vs synthetic→holdout (or holdout→train).

    A mass near zero only in the train histogram means copies of training slices.
    """
    bins = np.asarray(bins, dtype=float)
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for counts, label, colour in ((train, "to train", "tab:red"), (holdout, "to holdout", "tab:blue")):
        counts = np.asarray(counts, dtype=float)
        if len(counts) == len(bins) - 1 and counts.sum() > 0:
            ax.stairs(counts / counts.sum(), bins, label=label, color=colour, lw=1.5)
    if threshold is not None:
        ax.axvline(threshold, c="k", ls=":", lw=1, label="copy threshold")
    ax.set_xlabel("distance to closest record")
    ax.set_ylabel("share of synthetic slices")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return png_bytes(fig)


def estimate_bars(
    labels: Sequence[str],
    values: Sequence[float | None],
    cis: Sequence[Sequence[float | None] | None],
    *,
    title: str,
    ylabel: str,
    groups: Sequence[str] | None = None,
) -> bytes:
    """Bars with 95 % CI error bars; ``groups`` colours bars by group (e.g. regime)."""
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    lo = np.array([np.nan if not c or c[0] is None else c[0] for c in cis], dtype=float)
    hi = np.array([np.nan if not c or c[1] is None else c[1] for c in cis], dtype=float)
    err = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
    err = np.nan_to_num(err)
    fig, ax = plt.subplots(figsize=(max(3.5, 0.45 * len(labels) + 1.5), 3.2))
    colours = None
    if groups is not None:
        uniq = list(dict.fromkeys(groups))
        palette = plt.get_cmap("tab10")
        colours = [palette(uniq.index(g) % 10) for g in groups]
    x = np.arange(len(labels))
    ax.bar(x, np.nan_to_num(v), yerr=err, color=colours, capsize=3)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if groups is not None:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=palette(i % 10), label=g) for i, g in enumerate(uniq)], fontsize=7)
    return png_bytes(fig)


def pareto_plot(
    names: Sequence[str],
    fidelity: Sequence[float | None],
    utility: Sequence[float | None],
    privacy: Sequence[float | None],
    *,
    labels: tuple[str, str, str],
    optimal: Sequence[bool],
) -> bytes:
    """Three pairwise panels of the trade-off (fidelity, utility, privacy); Pareto-optimal runs ringed."""
    data = [np.array([np.nan if x is None else x for x in arr], dtype=float) for arr in (fidelity, utility, privacy)]
    pairs = ((0, 1), (0, 2), (1, 2))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    fig.subplots_adjust(wspace=0.38)
    palette = plt.get_cmap("tab10")
    for ax, (i, j) in zip(axes, pairs):
        for k, name in enumerate(names):
            x, y = data[i][k], data[j][k]
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            ax.scatter([x], [y], color=palette(k % 10), s=40, zorder=3, label=name)
            if optimal[k]:
                ax.scatter([x], [y], facecolors="none", edgecolors="k", s=140, lw=1.2, zorder=4)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_xlabel(labels[i], fontsize=8)
        ax.set_ylabel(labels[j], fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("trade-off across generators (ringed: Pareto-optimal)", fontsize=9)
    return png_bytes(fig)
