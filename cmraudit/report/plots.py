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
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * cell_inches, nrows * cell_inches + (0.3 if title else 0)), squeeze=False
    )
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


def roc_plot(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str, floor: float = 1e-3
) -> bytes:
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
    ax.legend(
        fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0
    )  # beside: curves stay visible
    return png_bytes(fig)


def dcr_histogram(
    bins: Sequence[float],
    train: Sequence[float],
    holdout: Sequence[float],
    *,
    title: str,
    threshold: float | None = None,
) -> bytes:
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
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
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

        # outside the axes, right of the bars: a legend inside would hide the tallest bars
        ax.legend(handles=[Patch(color=palette(i % 10), label=g) for i, g in enumerate(uniq)], fontsize=7,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, title="trained on",
                  title_fontsize=7)
    return png_bytes(fig)


def loss_curves(curves: Mapping[str, Mapping[str, np.ndarray]]) -> bytes:
    """One panel per training stage: loss against step (log y when it spans a decade), lr on a twin axis."""
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.0), squeeze=False)
    for ax, (stage, d) in zip(axes.flat, curves.items()):
        step, loss = np.asarray(d["step"], float), np.asarray(d["loss"], float)
        ok = np.isfinite(loss)
        ax.plot(step[ok], loss[ok], c="tab:blue", lw=1.4, marker="." if ok.sum() < 30 else None, label="loss")
        pos = loss[ok][loss[ok] > 0]
        if len(pos) > 1 and pos.max() / pos.min() > 10:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(stage, fontsize=9)
        ax.grid(alpha=0.3)
        lr = np.asarray(d.get("lr", []), float)
        if len(lr) == len(step) and np.isfinite(lr).any():
            ax2 = ax.twinx()
            ax2.plot(step, lr, c="0.6", lw=1, ls="--", label="learning rate")
            ax2.set_ylabel("learning rate", fontsize=7, color="0.4")
            ax2.tick_params(labelsize=6, colors="0.4")
    fig.tight_layout()
    return png_bytes(fig)


def real_vs_synthetic(series: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                      labels: tuple[str, str] = ("real", "synthetic"), bins: int = 30) -> bytes:
    """One panel per quantity: normalised histograms of real (blue) and synthetic (red) values on shared bins;
    one legend above the panels (never over a histogram)."""
    n = len(series)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 2.9), squeeze=False)
    for ax, (name, (real, syn)) in zip(axes.flat, series.items()):
        real, syn = np.asarray(real, float), np.asarray(syn, float)
        both = np.r_[real, syn]
        lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        for vals, label, colour in ((real, labels[0], "tab:blue"), (syn, labels[1], "tab:red")):
            if len(vals):
                ax.hist(vals, edges, density=True, histtype="step", lw=1.5, color=colour, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    fig.legend(handles, names, loc="upper center", ncol=2, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 1.0))
    return png_bytes(fig)


def privacy_utility(auc: Mapping, dice: Mapping, real_dice: Mapping | None, *, attack: str,
                    epsilon: float | None = None) -> bytes:
    """One run on the privacy–utility plane: attack AUC (x, 0.5 = chance) against synthetic-only Dice (y), with
    CIs."""
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    x, y = float(auc["value"]), float(dice["value"])
    xe = [[max(0.0, x - auc["ci"][0])], [max(0.0, auc["ci"][1] - x)]] if auc.get("ci") else None
    ye = [[max(0.0, y - dice["ci"][0])], [max(0.0, dice["ci"][1] - y)]] if dice.get("ci") else None
    label = "this run" + ("" if epsilon is None else f" (ε = {epsilon:.3g})")
    ax.errorbar([x], [y], xerr=xe, yerr=ye, fmt="o", c="tab:red", capsize=3, label=label, zorder=3)
    ax.axvline(0.5, c="0.5", ls=":", lw=1, label="chance AUC (no leak)")
    if real_dice is not None and isinstance(real_dice.get("value"), (int, float)):
        ax.axhline(float(real_dice["value"]), c="tab:blue", ls="--", lw=1, label="Dice, trained on real")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel(f"membership-inference AUC ({attack}, patient level)")
    ax.set_ylabel("mean Dice, trained on synthetic")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
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
