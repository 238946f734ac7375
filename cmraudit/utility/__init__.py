"""Utility of a synthetic set: a DynUNet segmenter trained per regime (real, synthetic,
real+synthetic, cross-vendor) and scored on real test patients (Dice, IoU, HD95/ASD in mm).
Front door: :func:`evaluate_utility`. Definitions: docs/metrics.md."""
from .evaluate import UtilityResult, evaluate_utility, utility_stage
from .metrics import compute_asd, compute_dice, compute_hd95, compute_iou, score_segmentation
from .segmentation import Segmenter

__all__ = [
    "Segmenter",
    "UtilityResult",
    "compute_asd",
    "compute_dice",
    "compute_hd95",
    "compute_iou",
    "evaluate_utility",
    "score_segmentation",
    "utility_stage",
]
