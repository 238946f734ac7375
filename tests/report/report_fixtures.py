"""Report dicts and a tiny run directory for the report tests (no trained model needed).

``make_report("copycat")`` leaks (high copy rate and AUC), ``make_report("holdout")`` is
private, ``make_report("skipped")`` is private but with the registered copy rate skipped.
"""
from __future__ import annotations

import copy

import numpy as np
from scipy import ndimage

from cmraudit.data.dataset import Dataset, write_dataset
from cmraudit.report.gate import compute_verdicts
from cmraudit.report.io import write_report
from cmraudit.report.schema import SCHEMA_VERSION


def est(value, lo, hi, n, unit="patient"):
    return {"value": value, "ci": [lo, hi], "n": n, "unit": unit}


def _roc(auc_like: float):
    fpr = [0.0, 0.001, 0.01, 0.1, 0.3, 1.0]
    tpr = [min(1.0, f ** (1 - auc_like) if f > 0 else 0.0) for f in fpr]
    return {"fpr": fpr, "tpr": tpr}


def _mia(auc, tpr1, leaky: bool):
    level = lambda unit, n: {  # noqa: E731
        "auc": est(auc, auc - 0.05, min(1.0, auc + 0.05 if leaky else auc + 0.06), n, unit),
        "tpr_at_1pct_fpr": est(tpr1, max(0.0, tpr1 - 0.02), tpr1 + 0.03, n, unit),
        "tpr_at_0_1pct_fpr": {"status": "skipped", "reason": "needs >= 1000 non-members, have 40"},
        "advantage": est(abs(auc - 0.5), 0.0, abs(auc - 0.5) + 0.05, n, unit),
        "roc": _roc(auc),
    }
    return {"slice": level("slice", 400), "patient": level("patient", 40)}


def _space(copy_rate, ci, patients, pci, n_syn=200, with_pairs=True):
    bins = list(np.linspace(0, 10, 11))
    near = [80, 20, 0, 0, 0, 0, 0, 0, 0, 0] if copy_rate > 0.5 else [0, 0, 5, 20, 40, 30, 5, 0, 0, 0]
    out = {
        "copy_detection": {
            "threshold": 1.5,
            "alpha": 0.001,
            "copy_rate": est(copy_rate, ci[0], ci[1], n_syn, "slice"),
            "patients_copied": est(patients, pci[0], pci[1], 20, "patient"),
            "closer_to_train_share": est(0.95 if copy_rate > 0.5 else 0.5, 0.4, 0.6, n_syn, "slice"),
            "legacy_nndr_rate": est(0.1, 0.05, 0.15, n_syn, "slice"),
        },
        "memorisation": {"memorised_rate": est(copy_rate, ci[0], ci[1], n_syn, "slice")},
        "dcr_histogram": {"bins": bins, "train": near, "holdout": [0, 0, 5, 20, 40, 30, 5, 0, 0, 0]},
    }
    out["copy_detection"]["flagged_indices"] = list(range(n_syn)) if copy_rate > 0.5 else []
    if with_pairs:
        out["copy_detection"]["top_pairs"] = [
            {"synthetic_index": i, "train_index": i, "distance": 0.1 * i, "flagged": copy_rate > 0.5} for i in range(4)
        ]
    return out


def make_report(kind: str = "holdout", *, n_synthetic: int = 12) -> dict:
    leaky = kind == "copycat"
    if leaky:
        pixel = _space(0.9, (0.85, 0.94), 1.0, (0.83, 1.0), n_synthetic)
        domain = _space(0.8, (0.74, 0.85), 0.95, (0.76, 0.99), n_synthetic, with_pairs=False)
        registered = _space(0.95, (0.9, 0.98), 1.0, (0.85, 1.0), n_synthetic, with_pairs=False)
        mia = {"gan_leaks": _mia(0.97, 0.9, True), "domias": _mia(0.9, 0.6, True)}
    else:
        pixel = _space(0.0, (0.0, 0.004), 0.0, (0.0, 0.03), n_synthetic)
        domain = _space(0.001, (0.0, 0.006), 0.0, (0.0, 0.04), n_synthetic, with_pairs=False)
        registered = _space(0.0, (0.0, 0.012), 0.0, (0.0, 0.04), n_synthetic, with_pairs=False)
        mia = {"gan_leaks": _mia(0.5, 0.01, False), "domias": _mia(0.52, 0.012, False)}
    mia["whitebox_loss"] = {"status": "skipped", "reason": "generator has no loss (tags.has_loss is False)"}
    if kind == "skipped":
        registered["copy_detection"]["copy_rate"] = {
            "status": "skipped",
            "reason": "feature extraction failed in this test",
        }
    dice = lambda base: {
        s: est(base + d, base + d - 0.03, base + d + 0.03, 10) for s, d in (("RV", -0.05), ("MYO", -0.08), ("LV", 0.0))
    }  # noqa: E731
    report = {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "cmraudit_version": "0.1.0",
            "created_utc": "2026-11-21T22:00:00Z",
            "seed": 0,
            "device": "cpu",
            "config": {"generator": kind, "preset": "quick"},
            "git_commit": None,
            "versions": {"python": "3.11"},
            "data_fingerprints": {"train": "sha256:abc"},
            "plugins": {},
        },
        "data": {
            "source": "phantom",
            "train": {"patients": 20, "slices": 160},
            "holdout": {"patients": 20, "slices": 160},
            "test": {"patients": 10, "slices": 80},
            "synthetic": {"patients": n_synthetic, "slices": n_synthetic},
        },
        "generator": {
            "name": kind,
            "params": {},
            "plugin": {"distribution": "cmraudit", "version": "0.1.0"},
            "training_time_s": 1.0,
            "dp": None,
        },
        "fidelity": {
            "distribution": {
                "pixel": {
                    "frechet_distance": est(3.0 if leaky else 12.0, 2.5, 14.0, 200, "slice"),
                    "kid": est(0.01, 0.0, 0.02, 200, "slice"),
                    "precision": est(0.8, 0.75, 0.85, 200, "slice"),
                    "recall": est(0.7, 0.65, 0.75, 200, "slice"),
                    "density": est(1.0, 0.9, 1.1, 200, "slice"),
                    "coverage": est(0.9 if leaky else 0.6, 0.5, 0.95, 200, "slice"),
                }
            },
            "paired": {
                "psnr": est(20.0, 19.0, 21.0, 80, "slice"),
                "ssim": est(0.6, 0.55, 0.65, 80, "slice"),
                "ms_ssim": est(0.7, 0.65, 0.75, 80, "slice"),
                "lpips": {"status": "skipped", "reason": "no local VGG weights"},
            },
        },
        "utility": {
            "regimes": {
                "real": {"dice": dice(0.85)},
                "synthetic": {"dice": dice(0.80 if leaky else 0.7)},
                "real+synthetic": {"dice": dice(0.86)},
            }
        },
        "privacy": {"feature_spaces": {"pixel": pixel, "domain": domain, "registered": registered}, "mia": mia},
    }
    report["verdicts"] = compute_verdicts(report)
    return report


def variant(report: dict, mutate) -> dict:
    r = copy.deepcopy(report)
    mutate(r)
    return r


# -------------------------------------------------------------- datasets
def textured_dataset(
    n_patients: int, slices: int, *, seed: int, size: int = 32, prefix: str = "p", source: str = "real"
) -> Dataset:
    """Slices with a random smooth texture each (distinct per slice) and disc masks; values in [-0.9, 0.9]."""
    rng = np.random.default_rng(seed)
    n = n_patients * slices
    tex = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 1.5, 1.5))
    tex = tex / np.abs(tex).max(axis=(1, 2), keepdims=True) * 0.9
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-2, 2, 2)
        r = np.hypot(yy - cy, xx - cx)
        masks[i][r < size * 0.28] = 2
        masks[i][r < size * 0.18] = 3
        masks[i][(np.hypot(yy - cy, xx - cx - size * 0.3) < size * 0.12) & (masks[i] == 0)] = 1
    pid = np.repeat([f"{prefix}{k:03d}" for k in range(n_patients)], slices)
    return Dataset(images=tex.astype(np.float32), masks=masks, patient_id=pid, source=np.full(n, source, dtype=object))


def make_run_dir(root, kind: str = "holdout"):
    """A run directory with data/train, synthetic and report.json; returns (path, train, synthetic)."""
    train = textured_dataset(4, 3, seed=1)
    synthetic = textured_dataset(12, 1, seed=2, prefix="syn", source="synthetic:test")
    write_dataset(train, root / "data" / "train")
    write_dataset(synthetic, root / "synthetic")
    write_report(root, make_report(kind, n_synthetic=len(synthetic)))
    return root, train, synthetic
