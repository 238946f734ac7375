"""``cmraudit data import images`` and ``cmraudit data export``: image files of other tools in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..data.export import export_dataset
from ..data.importers.images import import_images
from . import _state
from .data import data_app, import_app


@import_app.command("images")
def import_images_cmd(
    root: Path = typer.Argument(
        ...,
        help="Folder of 2-D images: .png (8/16-bit grey; RGB by luminance), .nii/.nii.gz (2-D or 3-D [H, "
        "W, N]), .npy/.npz.",
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (prepared dataset)."),
    masks: Optional[Path] = typer.Option(
        None, "--masks", help="Parallel folder of masks matched by file name (without: an image-only set)."
    ),
    labels: str = typer.Option(
        "acdc",
        "--labels",
        help="Mask label convention: acdc (1 RV, 2 MYO, 3 LV), mnms (1 LV, 2 MYO, 3 RV) or a map like "
        "'0=bg,85=RV,170=MYO,255=LV'.",
    ),
    mask_palette: Optional[str] = typer.Option(
        None,
        "--mask-palette",
        help='Decode colour-coded mask PNGs: jet (matplotlib jet over labels 0-3) or PALETTE.json '
        '{"VALUE": [R, G, B]}.',
    ),
    palette_tolerance: float = typer.Option(
        40.0,
        "--palette-tolerance",
        help="Largest RGB distance (0-255 units) of a mask pixel from its nearest palette colour.",
    ),
    id_pattern: Optional[str] = typer.Option(
        None,
        "--id-pattern",
        help="Regex on the file name; group 'patient' (or group 1) is the patient/generation id; optional "
        "groups slice, frame, vendor.",
    ),
    ids: Optional[Path] = typer.Option(
        None,
        "--ids",
        help="CSV with columns file, patient_id (optional vendor, frame, slice_index, source, "
        "spacing_y_mm, spacing_x_mm, annotated e.g. LV;MYO or none).",
    ),
    scale: str = typer.Option(
        "percentile",
        "--scale",
        help="Intensities to [-1, 1]: percentile (per slice 1st-99.9th, reference study), range:LO,HI "
        "(e.g. range:0,255) or none (already in [-1, 1]).",
    ),
    size: Optional[str] = typer.Option(
        None,
        "--size",
        help="Resize every slice to N×N or HxW (default: keep the given size; mixed sizes are an error).",
    ),
    source: str = typer.Option(
        "synthetic:external", "--source", help="index.csv source of every slice (e.g. synthetic:mygan, or real)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it is a prepared dataset."),
) -> None:
    """Import a folder of 2-D images from any tool (with or without masks), keeping the given size."""
    s = import_images(
        root,
        out=out,
        masks=masks,
        labels=labels,
        mask_palette=mask_palette,
        palette_tolerance=palette_tolerance,
        id_pattern=id_pattern,
        ids=ids,
        scale=scale,
        size=size,
        source=source,
        overwrite=overwrite,
        progress=not _state.QUIET,
    )
    kind = "with masks" if masks is not None else "image-only (no masks)"
    typer.echo(f"imported {s.patients} patients, {s.slices} slices ({kind}) -> {s.out}")


@data_app.command("export")
def export_cmd(
    path: Path = typer.Argument(..., help="Prepared dataset directory."),
    fmt: str = typer.Option(..., "--format", help="png or nifti (one file per slice, label masks beside)."),
    out: Path = typer.Option(..., "--out", help="Output folder: images/, masks/, ids.csv, export.json."),
    bits: int = typer.Option(8, "--bits", help="PNG bit depth: 8 or 16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it is an earlier export."),
) -> None:
    """Write a prepared dataset back out as PNG or NIfTI files (images and label masks) for other tools."""
    s = export_dataset(path, out=out, format=fmt, bits=bits, overwrite=overwrite)
    depth = f" {s.bits}-bit" if s.bits else ""
    typer.echo(f"exported {s.slices} slices as{depth} {s.format}{'' if s.has_masks else ' (image-only)'} -> {s.out}")
    typer.echo(f"re-import: {s.reimport}")
