"""Checks done on entry, before anything is trained or written: options, prepared datasets, patient splits.

Model folders are validated where they are read (:func:`cmraudit.generators.checkpoint.load_generator`:
config.json format, params, weights that fit the network; exit 4 naming the file).
"""

from __future__ import annotations

import os

from .data.dataset import Dataset, read_dataset
from .errors import DataError, UsageError

SEED_MAX = 2**32 - 1


def check_seed(seed: int, option: str = "--seed") -> None:
    if isinstance(seed, bool) or not 0 <= int(seed) <= SEED_MAX:
        raise UsageError(f"{option} {seed}: must be in 0..{SEED_MAX}")


def read_input_dataset(path: str | os.PathLike, *, option: str = "--data") -> Dataset:
    """Read a prepared dataset given as input and validate it on entry (every value), before any training.

    A problem is one DataError (exit 4) naming the option, the dataset and the problem.
    """
    return check_input_dataset(read_dataset(path), path=path, option=option)


def check_input_dataset(ds: Dataset, *, path, option: str) -> Dataset:
    """Every value of an input set (finite images in [-1, 1], labels 0..3) and at least one slice: else one
    DataError (exit 4) naming the option and the dataset."""
    if len(ds) == 0:
        raise DataError(f"{option} {path}: the dataset has no slices")
    ds.check_values(name=f"{option} {path}")
    return ds


def require_square(ds: Dataset, *, path, option: str = "--train") -> None:
    """The audit's registered copy search (90° views, square windows) needs square slices: else exit 4."""
    h, w = ds.shape
    if h != w:
        raise DataError(f"{option} {path}: slices are {h}×{w}; the audit needs square slices: re-import every set "
                        "with --size N")


def trained_size(gen) -> tuple[int, int] | None:
    """The slice size (H, W) a fitted generator was trained at, from its ``image_size_`` (an int for square slices
    or a pair); None for a plugin that does not record it (it then checks its inputs itself)."""
    size = getattr(gen, "image_size_", None)
    if size is None:
        return None
    return tuple(int(v) for v in size) if isinstance(size, (tuple, list)) else (int(size), int(size))


def check_run_config(config) -> None:
    """Option checks done before anything is read, trained or written (exit 2 naming the option)."""
    from .pipeline import PRESET_RUN, PRESETS

    if config.preset not in PRESET_RUN:
        raise UsageError(f"--preset {config.preset!r} is not a preset; expected one of {', '.join(PRESETS)}")
    if config.n_samples is not None and int(config.n_samples) < 1:
        raise UsageError(f"--n-samples {config.n_samples}: must be at least 1")
    if config.n_paired is not None and int(config.n_paired) < 0:
        raise UsageError(f"--n-paired {config.n_paired}: must be 0 (no paired fidelity) or more")
    check_seed(config.seed)


#: fewest patients per part for a run whose privacy audit can be computed (holdout is cross-fitted by patient)
MIN_SPLIT_PATIENTS = {"train": 1, "holdout": 2, "test": 1}


def check_split_sizes(parts: dict, source: str) -> None:
    """Refuse, before any training, a split that cannot support the audit (exit 4 naming the sizes)."""
    sizes = {k: int(len(v.patients)) for k, v in parts.items()}
    short = [f"{k} {sizes[k]} < {n}" for k, n in MIN_SPLIT_PATIENTS.items() if sizes.get(k, 0) < n]
    if short:
        raise DataError(
            f"{source}: {sum(sizes.values())} patients split {sizes['train']} / {sizes['holdout']} / {sizes['test']} "
            f"(train / holdout / test) cannot support the privacy audit ({', '.join(short)} patients); "
            f"use a dataset with at least 8 patients"
        )
