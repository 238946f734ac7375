"""The names report.json's schema is made of (:mod:`.schema` checks them; docs/report-schema.md documents them)."""
from __future__ import annotations

SCHEMA_VERSION = "1.0"
SUPPORTED_VERSIONS = ("1.0",)
UNITS = ("patient", "slice")
TOP_LEVEL = ("schema_version", "run", "data", "generator", "fidelity", "utility", "privacy", "verdicts")
STAGES = ("fidelity", "utility", "privacy")
VERDICTS = ("pass", "fail", "inconclusive", "not_required")

# stable metric key names: wherever they appear they must be an estimate, a skipped
# entry, or a mapping of those — never a bare number
ESTIMATE_KEYS = frozenset(
    {
        "copy_rate", "patients_copied", "closer_to_train_share", "memorised_rate", "legacy_nndr_rate",
        "auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "advantage",
        "dice", "iou", "hd95_mm", "asd_mm",
        "frechet_distance", "kid", "precision", "recall", "density", "coverage",
        "psnr", "ssim", "ms_ssim", "lpips",
    }
)

# metrics that are shares or probabilities: their values and CI bounds lie in [0, 1] (a report saying otherwise was
# edited or written by a broken tool; the gate must not read it)
UNIT_INTERVAL_KEYS = frozenset(
    {
        "copy_rate", "patients_copied", "closer_to_train_share", "memorised_rate", "legacy_nndr_rate",
        "auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "dice", "iou", "precision", "recall", "coverage",
    }
)

RUN_REQUIRED = {"cmraudit_version": str, "created_utc": str, "seed": int, "device": str, "config": dict}
SPLIT_REQUIRED = {"train": ("patients", "slices"), "holdout": ("patients", "slices"), "synthetic": ("slices",)}
DP_REQUIRED = {"epsilon": (int, float), "delta": (int, float), "accountant": str}
