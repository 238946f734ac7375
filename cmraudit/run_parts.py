"""Pieces of a run shared by ``run`` (cmraudit/pipeline.py) and ``fit`` / ``sample`` (cmraudit/standalone.py):
building a registered generator from a preset, the mask requirement, and the synthetic-set outputs (NIfTI, montage).
Here, not in pipeline.py, so that standalone.py and pipeline.py do not import each other.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data.dataset import Dataset
from .data.montage import save_montage
from .errors import DataError, PluginError
from .generators.base import BaseGenerator
from .generators.registry import call_plugin, get_plugin
from .io_guard import atomic_file, make_output_dir


def plugin_class(name: str) -> type[BaseGenerator]:
    """The registered class of ``name``; a plugin that does not subclass BaseGenerator breaks the contract (exit 3)."""
    info = get_plugin(name)
    if not (isinstance(info.cls, type) and issubclass(info.cls, BaseGenerator)):
        raise PluginError(f"generator {name!r} ({info.value}) does not subclass cmraudit.generators.BaseGenerator, "
                          "the plugin contract (docs/plugins.md)")
    return info.cls


def make_generator(name: str, *, preset: str, params: dict | None = None, device: str = "auto",
                   image_size: int | None = None) -> BaseGenerator:
    """Instantiate a registered generator: its preset (none declared: its defaults) plus overrides and ``device``."""
    cls = plugin_class(name)
    params = dict(params or {})
    if image_size is not None and "image_size" in cls.param_names():
        params.setdefault("image_size", image_size)
    params.setdefault("device", device)
    return call_plugin(name, "its constructor", cls.from_preset, preset, **params)


def require_masks(ds: Dataset, source: str) -> None:
    """Training needs masks: an image-only set (``data import images`` without ``--masks``) is a DataError."""
    if not ds.meta.get("has_masks", True):
        raise DataError(f"{source}: an image-only dataset (no masks); generators train on image-mask pairs. "
                        "To audit a synthetic set you already have, use cmraudit evaluate (docs/byo.md)")


def export_nifti(ds: Dataset, out: str | os.PathLike) -> Path:
    """Write ``images.nii.gz`` (float32) and ``masks.nii.gz`` (uint8) as [H, W, N] volumes."""
    import nibabel as nib

    out = make_output_dir(out, kind="nifti")
    sp = ds.spacing_mm[np.isfinite(ds.spacing_mm).all(1)]
    zooms = (float(sp[0, 0]), float(sp[0, 1]), 1.0) if len(sp) else (1.0, 1.0, 1.0)
    for name, arr in (("images", np.asarray(ds.images, np.float32)), ("masks", np.asarray(ds.masks, np.uint8))):
        img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(arr, (1, 2, 0))), np.diag([*zooms, 1.0]))
        img.header.set_zooms(zooms)
        with atomic_file(out / f"{name}.nii.gz", suffix=".tmp.nii.gz") as tmp:  # nibabel picks the format by suffix
            nib.save(img, tmp)
    return out


def save_grid(ds: Dataset, path: str | os.PathLike, *, n: int = 16, seed: int = 0) -> Path:
    return save_montage(ds, path, n=min(n, len(ds)), seed=seed, overlay="contour",
                        title="synthetic samples (mask contours)")


def labelled_as(syn: Dataset, ref: Dataset, rows=None) -> Dataset:
    """Slices drawn for the masks of ``ref`` (its ``rows``) keep ref's ``annotated`` bits: a structure not drawn in
    the conditioning mask is unknown there, not absent, and the generator only re-renders the masks it was given."""
    bits = np.asarray(ref.annotated if rows is None else ref.annotated[rows])
    if len(bits) == len(syn):
        syn.annotated = bits.astype(np.uint8).copy()
    return syn


def _synthetic_for_spacing(syn: Dataset, ref: Dataset) -> Dataset:
    sp = ref.spacing_mm[np.isfinite(ref.spacing_mm).all(1)]
    if len(sp):
        syn.spacing_mm = np.tile(np.median(sp, axis=0), (len(syn), 1))
    return syn
