"""Mask copy detection: synthetic label maps against training label maps.

Space: soft one-hot of the three structures (RV, MYO, LV; background implied), area-
downsampled to ``size``², flattened; Euclidean distance. At native resolution the squared
distance is the number of pixels whose label differs (×2 when both labels are structures).
Calibrated copy threshold on holdout→train as for images; the legacy rule (reference study)
flags a synthetic mask whose nearest training mask has mean Dice > 0.99 over the structures
present in either mask, computed at native resolution.
"""
from __future__ import annotations

import numpy as np

from ..estimates import rate_estimate
from ..features.masks import mask_features
from .copies import detect_copies


def mask_dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean Dice over structures present in either mask, per pair ([N,H,W] each); 1.0 if both empty."""
    out = np.empty(len(a))
    for i in range(len(a)):
        ds = []
        for c in (1, 2, 3):
            x, y = a[i] == c, b[i] == c
            tot = x.sum() + y.sum()
            if tot:
                ds.append(2 * np.logical_and(x, y).sum() / tot)
        out[i] = np.mean(ds) if ds else 1.0
    return out


def detect_mask_copies(*, train, holdout, synthetic, alpha: float, size: int = 16, dice_threshold: float = 0.99,
                       seed: int = 0, confidence: float = 0.95, hist_bins: int = 30) -> dict:
    ft, fh, fs = (mask_features(d.masks, size=size) for d in (train, holdout, synthetic))
    res = detect_copies(
        train_feats=ft, holdout_feats=fh, synthetic_feats=fs, train_patients=train.patient_id, space="masks",
        holdout_patients=holdout.patient_id,
        alpha=alpha, seed=seed, confidence=confidence, hist_bins=hist_bins, carlini_k=2,
    )
    nn = res.per_slice["nn_index"]
    dice = mask_dice(np.asarray(synthetic.masks), np.asarray(train.masks)[nn])
    n = len(dice)
    cd = res.to_dict()["copy_detection"]
    legacy_flag = dice > dice_threshold
    uniq = np.unique(np.asarray(train.patient_id).astype(str))
    cd["legacy"] = {
        "dice_gt_0_99": rate_estimate(int(legacy_flag.sum()), n, unit="slice", confidence=confidence).to_dict(),
        "patients_dice_gt_0_99": rate_estimate(
            len(np.unique(res.per_slice["nn_patient"][legacy_flag])), len(uniq), unit="patient", confidence=confidence
        ).to_dict(),
    }
    cd["nn_dice_median"] = float(np.median(dice)) if n else None
    cd["space"] = f"soft one-hot RV/MYO/LV at {size}x{size}, Euclidean"
    return {"copy_detection": cd, "dcr_histogram": res.dcr_histogram}
