"""Mask plausibility: anatomical sanity checks on label maps, synthetic compared with real.

Per slice (labels 1 RV, 2 MYO, 3 LV):

- ``one_component[S]`` — a structure S that is present forms exactly one 8-connected component;
  rate over slices where S is present;
- ``myo_closed_around_lv`` — LV present and ≥ 95 % of its pixels lie inside the hole-filled MYO
  (the myocardium is a closed ring around the cavity; the 5 % tolerance absorbs contour
  rasterisation — an open ring leaves the whole cavity outside); rate over slices with an LV;
- ``rv_adjacent_to_myo`` — RV present and within ``adjacency_px`` (default 2) pixels of the
  MYO; rate over slices with an RV;
- ``all_checks`` — share of slices passing every applicable check.

A check that needs a structure not annotated on the slice (``Dataset.annotated``; e.g. no RV in
Sunnybrook) is not applicable there: unknown is not absent.

Rates carry Wilson 95 % intervals (unit slice). Apical/basal real slices can legitimately fail
a check (open ring at the outflow tract), so compare the synthetic rate with the real one.
Area distributions (mm², px² when spacing is unknown) per structure and the ratios LV/MYO and
RV/LV (slices where both are present) are compared with the real ones by the two-sample
Kolmogorov–Smirnov statistic (0 = identical distributions, 1 = disjoint) and the 1-Wasserstein
distance (in mm² for areas, unitless for ratios).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._lazy import LazyModule
from ..data.dataset import STRUCTURES
from ..estimates import rate_estimate, skipped

ndimage = LazyModule("scipy.ndimage")
stats = LazyModule("scipy.stats")
_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class MaskChecks:
    """Per-slice check outcomes: 1 pass, 0 fail, -1 not applicable; and areas [N, 3] in mm²."""

    one_component: np.ndarray  # [N, 3]
    myo_closed: np.ndarray  # [N]
    rv_adjacent: np.ndarray  # [N]
    areas: np.ndarray  # [N, 3]

    @property
    def all_checks(self) -> np.ndarray:
        cols = np.column_stack([self.one_component, self.myo_closed, self.rv_adjacent])
        return np.all((cols == 1) | (cols == -1), axis=1)


def check_masks(masks: np.ndarray, spacing_mm: np.ndarray | None = None, *, annotated: np.ndarray | None = None,
                adjacency_px: int = 2, closed_tolerance: float = 0.05) -> MaskChecks:
    """Per-slice checks; a check needing a structure that is not annotated on a slice is not applicable (-1)."""
    masks = np.asarray(masks)
    n = len(masks)
    ann = np.full(n, 7, np.int64) if annotated is None else np.asarray(annotated, dtype=np.int64)
    has = {s: (ann & b) > 0 for s, b in (("RV", 1), ("MYO", 2), ("LV", 4))}
    sp = np.ones((n, 2)) if spacing_mm is None else np.asarray(spacing_mm, float).reshape(n, 2)
    sp = np.where(np.isfinite(sp), sp, 1.0)
    one = np.full((n, 3), -1, np.int8)
    closed = np.full(n, -1, np.int8)
    adj = np.full(n, -1, np.int8)
    areas = np.zeros((n, 3))
    for k in range(n):
        m = np.asarray(masks[k])
        for s in range(3):
            region = m == s + 1
            cnt = int(region.sum())
            areas[k, s] = cnt * sp[k, 0] * sp[k, 1]
            if cnt and has[STRUCTURES[s]][k]:
                one[k, s] = int(ndimage.label(region, structure=_EIGHT)[1] == 1)
        lv, myo, rv = m == 3, m == 2, m == 1
        if lv.any() and has["LV"][k] and has["MYO"][k]:
            outside = (lv & ~ndimage.binary_fill_holes(myo)).sum() / lv.sum()
            closed[k] = int(myo.any() and outside <= closed_tolerance)
        if rv.any() and has["RV"][k] and has["MYO"][k]:
            near = ndimage.binary_dilation(rv, structure=_EIGHT, iterations=adjacency_px)
            adj[k] = int((near & myo).any())
    return MaskChecks(one, closed, adj, areas)


def _rate(x: np.ndarray):
    ok = x[x >= 0]
    return rate_estimate(int((ok == 1).sum()), int(len(ok)), unit="slice").to_dict()


def _rates(c: MaskChecks) -> dict:
    return {
        "one_component": {s: _rate(c.one_component[:, i]) for i, s in enumerate(STRUCTURES)},
        "myo_closed_around_lv": _rate(c.myo_closed),
        "rv_adjacent_to_myo": _rate(c.rv_adjacent),
        "all_checks": _rate(c.all_checks.astype(np.int8)),
    }


def _compare(real: np.ndarray, syn: np.ndarray, unit: str) -> dict:
    real, syn = real[np.isfinite(real)], syn[np.isfinite(syn)]
    if len(real) < 2 or len(syn) < 2:
        return skipped(f"too few slices with the structure(s) present ({len(real)} real, {len(syn)} synthetic)")
    ks = stats.ks_2samp(real, syn)
    return {
        "ks_statistic": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "wasserstein": float(stats.wasserstein_distance(real, syn)),
        "real_median": float(np.median(real)),
        "synthetic_median": float(np.median(syn)),
        "n_real": int(len(real)),
        "n_synthetic": int(len(syn)),
        "unit": unit,
    }


def _ratio(a: np.ndarray, num: int, den: int) -> np.ndarray:
    ok = (a[:, num] > 0) & (a[:, den] > 0)
    return a[ok, num] / a[ok, den]


def evaluate_mask_plausibility(*, real, synthetic, spacing_known: bool | None = None) -> dict:
    """The report's ``mask_plausibility`` block for two Datasets (their masks and spacing)."""
    cr = check_masks(real.masks, real.spacing_mm, annotated=real.annotated)
    cs = check_masks(synthetic.masks, synthetic.spacing_mm, annotated=synthetic.annotated)
    if spacing_known is None:
        spacing_known = bool(np.isfinite(real.spacing_mm).all() and np.isfinite(synthetic.spacing_mm).all())
    unit = "mm2" if spacing_known else "px2"
    return {
        "synthetic": _rates(cs),
        "real": _rates(cr),
        "area": {
            s: _compare(
                np.where(cr.areas[:, i] > 0, cr.areas[:, i], np.nan),
                np.where(cs.areas[:, i] > 0, cs.areas[:, i], np.nan),
                unit,
            )
            for i, s in enumerate(STRUCTURES)
        },
        "ratio": {
            "LV/MYO": _compare(_ratio(cr.areas, 2, 1), _ratio(cs.areas, 2, 1), "ratio"),
            "RV/LV": _compare(_ratio(cr.areas, 0, 2), _ratio(cs.areas, 0, 2), "ratio"),
        },
    }
