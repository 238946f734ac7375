"""Patient-level splits: train (members), holdout (non-members, calibration), test (evaluation).

A patient is in exactly one split. Splits are seeded and stratified by vendor when vendors
are known, so each split sees every vendor in about the requested proportion.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from ..io_guard import write_text_atomic
from .dataset import Dataset

SPLIT_NAMES = ("train", "holdout", "test")


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.5
    holdout: float = 0.25
    test: float = 0.25

    def __post_init__(self) -> None:
        vals = (self.train, self.holdout, self.test)
        if any(v < 0 for v in vals) or abs(sum(vals) - 1.0) > 1e-6:
            raise UsageError(
                f"split fractions must be non-negative and sum to 1, got train={self.train}, "
                f"holdout={self.holdout}, test={self.test}"
            )


@dataclass(frozen=True)
class PatientSplit:
    """Patient ids per split, with the seed that drew them."""

    train: tuple[str, ...]
    holdout: tuple[str, ...]
    test: tuple[str, ...]
    seed: int
    fractions: SplitFractions

    def __getitem__(self, name: str) -> tuple[str, ...]:
        if name not in SPLIT_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "fractions": asdict(self.fractions),
            **{k: list(getattr(self, k)) for k in SPLIT_NAMES},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PatientSplit":
        try:
            return cls(
                train=tuple(d["train"]),
                holdout=tuple(d["holdout"]),
                test=tuple(d["test"]),
                seed=int(d["seed"]),
                fractions=SplitFractions(**d["fractions"]),
            )
        except (KeyError, TypeError) as e:
            raise DataError(f"split file is malformed: {e}") from e

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PatientSplit":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: cannot read split file ({e})") from e

    def apply(self, ds: Dataset) -> dict[str, Dataset]:
        """The three datasets, selected by patient."""
        return {k: ds.select_patients(getattr(self, k)) for k in SPLIT_NAMES}


def _allocate(n: int, fr: SplitFractions) -> tuple[int, int, int]:
    """Largest-remainder allocation of n patients, keeping ≥1 in each non-zero split when possible."""
    raw = np.array([fr.train, fr.holdout, fr.test]) * n
    counts = np.floor(raw).astype(int)
    rem = n - counts.sum()
    for i in np.argsort(-(raw - counts), kind="stable")[:rem]:
        counts[i] += 1
    return tuple(int(c) for c in counts)  # type: ignore[return-value]


def split_patients(
    ds: Dataset, *, seed: int, fractions: SplitFractions | None = None, stratify: bool = True
) -> PatientSplit:
    """Split the patients of ``ds`` into train / holdout / test (seeded, vendor-stratified)."""
    fr = fractions or SplitFractions()
    patients = [str(p) for p in ds.patients]
    if len(patients) < 3:
        raise DataError(f"need at least 3 patients to split into train/holdout/test, got {len(patients)}")
    vendor_of: dict[str, str] = {}
    for p, v in zip(ds.patient_id, ds.vendor):
        vendor_of.setdefault(str(p), str(v))
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    stratified = stratify and len({vendor_of[p] for p in patients}) > 1
    for p in patients:
        groups.setdefault(vendor_of[p] if stratified else "", []).append(p)
    fr_vec = np.array([fr.train, fr.holdout, fr.test])
    remaining = np.array(_allocate(len(patients), fr))  # global targets, reached exactly
    # floor allocation inside each stratum, then hand out the leftovers by largest remainder
    alloc: dict[str, np.ndarray] = {}
    for key in sorted(groups):
        ideal = len(groups[key]) * fr_vec
        alloc[key] = np.minimum(np.floor(ideal).astype(int), remaining)
        remaining -= alloc[key]
    for key in sorted(groups, key=lambda k: (-len(groups[k]), k)):
        ideal = len(groups[key]) * fr_vec
        while alloc[key].sum() < len(groups[key]):
            frac = np.where(remaining > 0, ideal - alloc[key], -np.inf)
            k = int(np.argmax(frac))
            alloc[key][k] += 1
            remaining[k] -= 1
    out: dict[str, list[str]] = {k: [] for k in SPLIT_NAMES}
    for key in sorted(groups):
        g = sorted(groups[key])
        rng.shuffle(g)
        a, b = int(alloc[key][0]), int(alloc[key][0] + alloc[key][1])
        out["train"] += g[:a]
        out["holdout"] += g[a:b]
        out["test"] += g[b:]
    return PatientSplit(
        train=tuple(sorted(out["train"])),
        holdout=tuple(sorted(out["holdout"])),
        test=tuple(sorted(out["test"])),
        seed=seed,
        fractions=fr,
    )
