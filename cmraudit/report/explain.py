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
    scale: str = "share (0–1)"  # what the value measures in (the HTML report's "unit" column)


MEANINGS: dict[str, Meaning] = {
    # privacy: copy detection / memorisation
    "copy_rate": Meaning(
        "Share of synthetic slices whose nearest training slice is closer than the calibrated copy threshold "
        "(a novel image is flagged with probability ≈ α).",
        "lower"),
    "patients_copied": Meaning(
        "Share of training patients with at least one synthetic slice flagged as a copy of one of their "
        "slices.",
        "lower"),
    "closer_to_train_share": Meaning(
        "Share of synthetic slices closer to a training slice than to any holdout slice; 0.5 = no preference "
        "for the training set.",
        "0.5"),
    "memorised_rate": Meaning(
        "Share of synthetic slices flagged as memorised by the nearest-neighbour distance ratio test.",
        "lower"),
    "legacy_nndr_rate": Meaning(
        "Legacy (reference study): share of synthetic slices with NNDR = d1/d2 < 0.6 — not calibrated, for "
        "comparison only.",
        "lower"),
    "threshold": Meaning(
        "Copy threshold on the nearest-neighbour distance, calibrated on holdout→train distances at the "
        "stated false-positive rate.",
        "", "distance"),
    "flagged_rate": Meaning(
        "Share of synthetic slices below the copy threshold (before subtracting the false-positive rate the "
        "calibration allows).",
        "lower"),
    "nndr_lt_0_6": Meaning(
        "Legacy (reference study): share of synthetic slices whose nearest/second-nearest training distance "
        "ratio is < 0.6; not calibrated.",
        "lower"),
    "nndr_lt_1_3": Meaning(
        "Legacy (Gu et al.): share of synthetic slices with nearest/second-nearest distance ratio < 1/3; not "
        "calibrated.",
        "lower"),
    "lpips_lt_0_05": Meaning(
        "Legacy (reference study): share of synthetic slices within LPIPS 0.05 of a training slice; needs "
        "local VGG weights.",
        "lower"),
    "dice_gt_0_99": Meaning(
        "Legacy: share of synthetic masks whose Dice with the nearest training mask exceeds 0.99 (a copied "
        "mask).",
        "lower"),
    "patients_dice_gt_0_99": Meaning(
        "Legacy: share of training patients with a synthetic mask of Dice > 0.99 to one of their masks.",
        "lower"),
    "lira_online": Meaning(
        "LiRA (online): likelihood-ratio membership attack calibrated on shadow models trained with and "
        "without each patient.",
        "0.5", "AUC / rate"),
    "lira_offline": Meaning(
        "LiRA (offline): likelihood-ratio membership attack calibrated on shadow models trained without each "
        "patient.",
        "0.5", "AUC / rate"),
    # membership inference
    "auc": Meaning(
        "Membership-inference ROC AUC: probability the attack scores a random member above a random non-"
        "member; 0.5 = chance.",
        "0.5", "AUC (0.5 = chance)"),
    "tpr_at_1pct_fpr": Meaning(
        "Share of members the attacker identifies while wrongly accusing at most 1% of non-members (TPR at "
        "the last ROC point with FPR ≤ 1%).",
        "lower"),
    "tpr_at_0_1pct_fpr": Meaning(
        "Share of members identified at ≤ 0.1% false accusations; needs ≥ 1000 non-members, else skipped.",
        "lower"),
    "advantage": Meaning(
        "Membership advantage TPR − FPR at the attack's pre-fixed threshold; 0 = no advantage over guessing.",
        "lower"),
    # fidelity
    "frechet_distance": Meaning(
        "Fréchet distance between Gaussian fits of real and synthetic features (biased by sample size: "
        "compare only at equal N and equal features).",
        "lower", "squared feature distance"),
    "kid": Meaning(
        "Kernel inception-style distance: unbiased MMD² with a cubic polynomial kernel on the named features;"
        " 0 = same distribution.",
        "lower", "MMD² (feature units)"),
    "precision": Meaning(
        "Share of synthetic samples inside the k-NN support of the real data (realism).",
        "higher"),
    "recall": Meaning(
        "Share of real samples inside the k-NN support of the synthetic data (diversity).",
        "higher"),
    "density": Meaning(
        "How many real k-NN balls contain each synthetic sample, divided by k (≈1 for matching "
        "distributions).",
        "higher", "ratio (1 = matching)"),
    "coverage": Meaning(
        "Share of real samples whose nearest synthetic sample lies in their k-NN ball.",
        "higher"),
    "psnr": Meaning(
        "Peak signal-to-noise ratio (dB) between the image generated from a real test mask and the real "
        "image.",
        "higher", "dB"),
    "ssim": Meaning(
        "Structural similarity between the generated and the real image of the same test mask (1 = "
        "identical).",
        "higher", "similarity (1 = identical)"),
    "ms_ssim": Meaning(
        "Multi-scale SSIM between the generated and the real image of the same test mask (1 = identical).",
        "higher", "similarity (1 = identical)"),
    "lpips": Meaning(
        "Learned perceptual distance (LPIPS, VGG) between generated and real paired images; skipped without "
        "local weights.",
        "lower", "distance"),
    "mean_pairwise_ms_ssim": Meaning(
        "Diversity: mean MS-SSIM between random pairs of slices of one set (synthetic or real); synthetic far"
        " above real = repeated images, far below = noise.",
        "", "similarity (1 = identical)"),
    "one_component": Meaning(
        "Mask plausibility: share of masks in which this structure is a single connected region.",
        "higher"),
    "myo_closed_around_lv": Meaning(
        "Mask plausibility: share of masks whose myocardium is a closed ring around the LV cavity.",
        "higher"),
    "rv_adjacent_to_myo": Meaning(
        "Mask plausibility: share of masks whose RV touches the myocardium.",
        "higher"),
    "all_checks": Meaning(
        "Mask plausibility: share of masks that pass every check (one region per structure, closed MYO ring, "
        "RV beside MYO).",
        "higher"),
    # utility
    "dice": Meaning(
        "Dice overlap of the segmentation with the expert mask for one structure (background excluded); 1 = "
        "perfect.",
        "higher", "overlap (1 = perfect)"),
    "iou": Meaning(
        "Intersection over union of the segmentation with the expert mask for one structure.",
        "higher", "overlap (1 = perfect)"),
    "hd95_mm": Meaning(
        "95th-percentile Hausdorff distance in millimetres between predicted and expert contours (a missed "
        "structure is penalised).",
        "lower", "mm"),
    "asd_mm": Meaning(
        "Average symmetric surface distance in millimetres between predicted and expert contours.",
        "lower", "mm"),
    "mean_dice": Meaning(
        "Dice averaged over RV, MYO and LV for a segmenter trained in this regime, tested on real test "
        "patients.",
        "higher", "overlap (1 = perfect)"),
    "mean_hd95_mm": Meaning(
        "HD95 averaged over RV, MYO and LV for a segmenter trained in this regime (missed structures "
        "penalised).",
        "lower", "mm"),
    "real+synthetic": Meaning(
        "Regime: a segmenter trained on real plus synthetic slices (a skipped row says why it could not run).",
        "", "—"),
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


def _lookup(path: str) -> Meaning | None:
    for part in reversed(path.split(".")):
        if part in MEANINGS:
            return MEANINGS[part]
    parts = path.split(".")
    if len(parts) >= 3 and parts[-2] == "mia":  # an attack that did not run: the row is the attack itself
        return Meaning(f"Membership-inference attack '{parts[-1]}' (docs/privacy.md); the row says why it did not run.",
                       "0.5", "—")
    return None


def meaning_of_path(path: str) -> str:
    """Meaning of the metric at a dotted report path: the deepest component with a registered
    meaning (``utility.regimes.real.dice.LV`` → dice)."""
    m = _lookup(path)
    return m.text if m else ""


def scale_of_path(path: str) -> str:
    """What the value at ``path`` is measured in ('share (0–1)', 'mm', 'dB' …; '' when unknown)."""
    m = _lookup(path)
    return m.scale if m else ""


def label_of_path(path: str, root: str = "") -> str:
    """A readable row name: ``utility.regimes.real.dice.LV`` → ``regimes › real › dice › LV``."""
    rel = path[len(root) + 1:] if root and path.startswith(root + ".") else path
    return " › ".join(p.replace("_", " ") for p in rel.split("."))
