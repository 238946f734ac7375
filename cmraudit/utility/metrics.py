"""Segmentation metrics per structure (RV, MYO, LV), background excluded, distances in mm.

- **Dice** and **IoU** per patient and structure: overlap pooled over that patient's slices on
  which the structure is annotated (a 2-D stack, so empty apical slices need no special case).
  A structure absent from both ground truth and prediction on all scored slices is not scored.
- **HD95** (95th-percentile symmetric Hausdorff distance, mm) and **ASD** (average symmetric
  surface distance, mm) per slice from boundary pixels with the slice's pixel spacing
  (``Dataset.spacing_mm``; 1 mm per pixel assumed when unknown, reported as ``spacing_assumed``),
  then averaged over a patient's slices. MONAI's HausdorffDistanceMetric returns NaN for a
  missed structure and its mean silently skips it; here a structure present in the ground
  truth but not predicted (or predicted but absent) scores the **missed-structure penalty**:
  the image diagonal in mm, √((H·s_y)² + (W·s_x)²) — the largest distance possible in the image.
  Both empty: not scored.
- Honouring partial labels: a structure whose bit is not set in ``annotated`` on a slice is
  *unknown*, never scored on that slice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._lazy import LazyModule
from ..data.dataset import STRUCTURE_BIT, STRUCTURES
from ..errors import UsageError

ndimage = LazyModule("scipy.ndimage")


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=0)


def missed_penalty_mm(shape: tuple[int, int], spacing: tuple[float, float]) -> float:
    """The penalty for a missed structure: the image diagonal in mm."""
    return float(np.hypot(shape[0] * spacing[0], shape[1] * spacing[1]))


def surface_distances(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each boundary pixel of ``pred`` to the boundary of ``gt`` and vice versa."""
    sp, sg = _surface(pred.astype(bool)), _surface(gt.astype(bool))
    dt_g = ndimage.distance_transform_edt(~sg, sampling=spacing)
    dt_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return dt_g[sp], dt_p[sg]


def compute_hd95(pred: np.ndarray, gt: np.ndarray, *, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """95th-percentile symmetric Hausdorff distance (mm) between two binary 2-D masks.

    max(P95 of pred→gt boundary distances, P95 of gt→pred). Missed/spurious structure: the
    penalty :func:`missed_penalty_mm`; both empty: NaN (not scored).
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise UsageError(f"HD95 needs two 2-D masks of one shape, got {pred.shape} and {gt.shape}")
    if not pred.any() and not gt.any():
        return float("nan")
    if not pred.any() or not gt.any():
        return missed_penalty_mm(pred.shape, spacing)
    a, b = surface_distances(pred, gt, spacing)
    return float(max(np.percentile(a, 95), np.percentile(b, 95)))


def compute_asd(pred: np.ndarray, gt: np.ndarray, *, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Average symmetric surface distance (mm); same missed-structure penalty as HD95."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if not pred.any() and not gt.any():
        return float("nan")
    if not pred.any() or not gt.any():
        return missed_penalty_mm(pred.shape, spacing)
    a, b = surface_distances(pred, gt, spacing)
    return float(np.concatenate([a, b]).mean())


def compute_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice = 2|P∩G| / (|P| + |G|) over all given pixels; NaN when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    den = pred.sum() + gt.sum()
    return float("nan") if den == 0 else float(2.0 * (pred & gt).sum() / den)


def compute_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union; NaN when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    union = (pred | gt).sum()
    return float("nan") if union == 0 else float((pred & gt).sum() / union)


@dataclass(frozen=True)
class PatientScores:
    """Per patient (rows, ``patients``) and structure (columns, ``STRUCTURES``); NaN = not scored."""

    patients: np.ndarray
    dice: np.ndarray
    iou: np.ndarray
    hd95_mm: np.ndarray
    asd_mm: np.ndarray
    spacing_assumed: bool


def score_segmentation(
    *,
    pred: np.ndarray,
    gt: np.ndarray,
    patient_id: np.ndarray,
    annotated: np.ndarray | None = None,
    spacing_mm: np.ndarray | None = None,
) -> PatientScores:
    """Score predicted label maps [N, H, W] against ground truth per patient and structure."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise UsageError(f"pred and gt must be label maps [N, H, W] of one shape, got {pred.shape} and {gt.shape}")
    n = len(gt)
    annotated = np.full(n, 7, np.uint8) if annotated is None else np.asarray(annotated)
    spacing = np.full((n, 2), np.nan) if spacing_mm is None else np.asarray(spacing_mm, dtype=float)
    assumed = not np.isfinite(spacing).all()
    spacing = np.where(np.isfinite(spacing), spacing, 1.0)
    ids = np.asarray(patient_id).astype(str)
    patients = np.unique(ids)
    out = {k: np.full((len(patients), len(STRUCTURES)), np.nan) for k in ("dice", "iou", "hd95", "asd")}
    for pi, p in enumerate(patients):
        rows = np.flatnonzero(ids == p)
        for si, name in enumerate(STRUCTURES):
            lab = si + 1
            scored = [r for r in rows if annotated[r] & STRUCTURE_BIT[name]]
            if not scored:
                continue
            P, G = pred[scored] == lab, gt[scored] == lab
            out["dice"][pi, si] = compute_dice(P, G)
            out["iou"][pi, si] = compute_iou(P, G)
            hd = [compute_hd95(P[j], G[j], spacing=tuple(spacing[r])) for j, r in enumerate(scored)]
            asd = [compute_asd(P[j], G[j], spacing=tuple(spacing[r])) for j, r in enumerate(scored)]
            hd, asd = np.asarray(hd), np.asarray(asd)
            if np.isfinite(hd).any():
                out["hd95"][pi, si] = np.nanmean(hd)
                out["asd"][pi, si] = np.nanmean(asd)
    return PatientScores(patients, out["dice"], out["iou"], out["hd95"], out["asd"], assumed)
