"""Data layer: prepared-dataset format, importers, preprocessing, splits and the phantom.

Imports nothing of cmraudit but ``errors``.
"""
from .dataset import (
    ALL_STRUCTURES,
    LABELS,
    STRUCTURES,
    STRUCTURE_BIT,
    Dataset,
    bits_to_structures,
    read_dataset,
    structures_to_bits,
    write_dataset,
)
from .montage import save_montage
from .phantom import PhantomConfig, make_phantom
from .splits import PatientSplit, SplitFractions, split_patients

__all__ = [
    "ALL_STRUCTURES",
    "LABELS",
    "STRUCTURES",
    "STRUCTURE_BIT",
    "Dataset",
    "PatientSplit",
    "PhantomConfig",
    "SplitFractions",
    "bits_to_structures",
    "make_phantom",
    "read_dataset",
    "save_montage",
    "split_patients",
    "structures_to_bits",
    "write_dataset",
]
