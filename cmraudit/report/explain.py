"""One-line meanings of every reported number (shared by the HTML report and docs/report-schema.md).

Keys are the stable metric names of report.json. ``direction`` says which way is better
for the data steward (privacy) or the researcher (fidelity, utility).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Meaning:
    text: str
    direction: str  # "lower", "higher", "0.5" (chance) or "" (context)


MEANINGS: dict[str, Meaning] = {
    # privacy: copy detection / memorisation
    "copy_rate": Meaning("Share of synthetic slices whose nearest training slice is closer than the calibrated copy threshold (a novel image is flagged with probability ≈ α).", "lower"),
    "patients_copied": Meaning("Share of training patients with at least one synthetic slice flagged as a copy of one of their slices.", "lower"),
    "closer_to_train_share": Meaning("Share of synthetic slices closer to a training slice than to any holdout slice; 0.5 = no preference for the training set.", "0.5"),
    "memorised_rate": Meaning("Share of synthetic slices flagged as memorised by the nearest-neighbour distance ratio test.", "lower"),
    "legacy_nndr_rate": Meaning("Legacy (reference study): share of synthetic slices with NNDR = d1/d2 < 0.6 — not calibrated, for comparison only.", "lower"),
    "threshold": Meaning("Copy threshold on the nearest-neighbour distance, calibrated on holdout→train distances at the stated false-positive rate.", ""),
    # membership inference
    "auc": Meaning("Membership-inference ROC AUC: probability the attack scores a random member above a random non-member; 0.5 = chance.", "0.5"),
    "tpr_at_1pct_fpr": Meaning("Share of members the attacker identifies while wrongly accusing at most 1% of non-members (TPR at the last ROC point with FPR ≤ 1%).", "lower"),
    "tpr_at_0_1pct_fpr": Meaning("Share of members identified at ≤ 0.1% false accusations; needs ≥ 1000 non-members, else skipped.", "lower"),
    "advantage": Meaning("Membership advantage TPR − FPR at the attack's pre-fixed threshold; 0 = no advantage over guessing.", "lower"),
    # fidelity
    "frechet_distance": Meaning("Fréchet distance between Gaussian fits of real and synthetic features (biased by sample size: compare only at equal N and equal features).", "lower"),
    "kid": Meaning("Kernel inception-style distance: unbiased MMD² with a cubic polynomial kernel on the named features; 0 = same distribution.", "lower"),
    "precision": Meaning("Share of synthetic samples inside the k-NN support of the real data (realism).", "higher"),
    "recall": Meaning("Share of real samples inside the k-NN support of the synthetic data (diversity).", "higher"),
    "density": Meaning("How many real k-NN balls contain each synthetic sample, divided by k (≈1 for matching distributions).", "higher"),
    "coverage": Meaning("Share of real samples whose nearest synthetic sample lies in their k-NN ball.", "higher"),
    "psnr": Meaning("Peak signal-to-noise ratio (dB) between the image generated from a real test mask and the real image.", "higher"),
    "ssim": Meaning("Structural similarity between the generated and the real image of the same test mask (1 = identical).", "higher"),
    "ms_ssim": Meaning("Multi-scale SSIM between the generated and the real image of the same test mask (1 = identical).", "higher"),
    "lpips": Meaning("Learned perceptual distance (LPIPS, VGG) between generated and real paired images; skipped without local weights.", "lower"),
    # utility
    "dice": Meaning("Dice overlap of the segmentation with the expert mask for one structure (background excluded); 1 = perfect.", "higher"),
    "iou": Meaning("Intersection over union of the segmentation with the expert mask for one structure.", "higher"),
    "hd95_mm": Meaning("95th-percentile Hausdorff distance in millimetres between predicted and expert contours (a missed structure is penalised).", "lower"),
    "asd_mm": Meaning("Average symmetric surface distance in millimetres between predicted and expert contours.", "lower"),
}

UNIT_TEXT = {
    "patient": "n counts patients; the CI resamples patients",
    "slice": "n counts slices; the CI treats slices as independent",
}


def meaning_of(key: str) -> str:
    """The one-line meaning of a metric key ('' for unknown keys)."""
    m = MEANINGS.get(key)
    return m.text if m else ""


def direction_of(key: str) -> str:
    m = MEANINGS.get(key)
    return m.direction if m else ""


def meaning_of_path(path: str) -> str:
    """Meaning of the metric at a dotted report path: the deepest component with a registered
    meaning (``utility.regimes.real.dice.LV`` → dice)."""
    for part in reversed(path.split(".")):
        if part in MEANINGS:
            return MEANINGS[part].text
    return ""
