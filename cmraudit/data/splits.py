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
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(tmp, path)

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


def split_patients(ds: Dataset, *, seed: int, fractions: SplitFractions | None = None, stratify: bool = True) -> PatientSplit:
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
    if stratify and len({vendor_of[p] for p in patients}) > 1:
        for p in patients:
            groups.setdefault(vendor_of[p], []).append(p)
    else:
        groups[""] = list(patients)
    out = {k: [] for k in SPLIT_NAMES}
    # allocate over the pooled count so small strata do not distort the totals
    total = _allocate(len(patients), fr)
    order: list[str] = []
    for key in sorted(groups):
        g = sorted(groups[key])
        rng.shuffle(g)
        order.extend(g)
    # interleave strata: assign round-robin positions so each split gets each vendor proportionally
    strata_pos = []
    for key in sorted(groups):
        g = [p for p in order if vendor_of.get(p, "") == key] if key else order
        m = len(g)
        for j, p in enumerate(g):
            strata_pos.append(((j + 0.5) / m, rng.random(), p))
    strata_pos.sort()
    ranked = [p for _, _, p in strata_pos]
    # deal patients to splits in proportion to their targets
    counts = {k: 0 for k in SPLIT_NAMES}
    targets = dict(zip(SPLIT_NAMES, total))
    for i, p in enumerate(ranked):
        # choose the split furthest below its target share at this point
        frac_done = (i + 1) / len(ranked)
        deficits = {k: targets[k] * frac_done - counts[k] for k in SPLIT_NAMES if counts[k] < targets[k]}
        k = max(deficits, key=lambda s: (deficits[s], -SPLIT_NAMES.index(s)))
        out[k].append(p)
        counts[k] += 1
    return PatientSplit(
        train=tuple(sorted(out["train"])),
        holdout=tuple(sorted(out["holdout"])),
        test=tuple(sorted(out["test"])),
        seed=seed,
        fractions=fr,
    )
