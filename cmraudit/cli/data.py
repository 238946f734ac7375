"""``cmraudit data phantom|import …|info``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..data.dataset import STRUCTURES, read_dataset, write_dataset
from ..data.importers import import_acdc, import_folder, import_mnms
from ..data.importers.dicom import import_dicom, import_sunnybrook
from ..data.phantom import PhantomConfig, make_phantom
from ..data.preprocess import PreprocessConfig
from ..errors import DataError, UsageError
from ..io_guard import check_output
from ..progress import make_console
from . import _state

data_app = typer.Typer(help="Build, import and inspect prepared datasets.", no_args_is_help=True)
import_app = typer.Typer(help="Import real data (NIfTI / DICOM) into the prepared format.", no_args_is_help=True)
data_app.add_typer(import_app, name="import")
console = make_console()

_CROP = typer.Option(
    128, "--crop", min=8, max=4096,
    help="ROI crop size in pixels, centred on the mask centroid (8–4096).",
)
_SIZE = typer.Option(
    None, "--size", min=8, max=2048,
    help="Resize the crop to SIZE×SIZE (images area/bilinear, masks nearest; 8–2048).",
)
SEED_MAX = 2**32 - 1


def _guard(out: Path, **inputs) -> None:
    """The shared output-path guard (cmraudit.io_guard): OUT is none of the inputs, holds none, lies in none."""
    check_output(out, inputs=[(k, v) for k, v in inputs.items()], option="--out", produces="dataset")
_STRICT = typer.Option(False, "--strict", help="Treat a bad patient as an error instead of skipping it.")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace OUT if it exists.")


def _print_summary(summary) -> None:
    typer.echo(f"imported {summary.patients} patients, {summary.slices} slices -> {summary.out}")
    if summary.skipped:
        # plain lines (not a table) so long paths stay greppable in CI logs
        typer.echo(f"skipped ({len(summary.skipped)}):")
        for who, why in summary.skipped:
            typer.echo(f"  {who}: {why}")


@data_app.command("phantom")
def phantom_cmd(
    out: Path = typer.Option(..., "--out", help="Output directory (prepared dataset)."),
    subjects: int = typer.Option(60, "--subjects", min=1, max=100000, help="Number of phantom subjects (patients)."),
    slices: int = typer.Option(8, "--slices", min=1, max=64, help="Short-axis slices per subject and phase (1–64)."),
    size: int = typer.Option(64, "--size", min=16, max=1024, help="Image size in pixels (16–1024)."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=SEED_MAX,
        help="Random seed (the phantom is deterministic by seed).",
    ),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Write the embedded procedural cine-MRI phantom as a prepared dataset."""
    _guard(out)
    if out.exists() and not overwrite:  # before the work, not after it

        raise DataError(f"{out}: output already exists (pass overwrite / --overwrite to replace it)")
    cfg = PhantomConfig(subjects=subjects, slices=slices, size=size)
    ds = make_phantom(cfg, seed=seed, progress=not _state.QUIET)
    write_dataset(ds, out, overwrite=overwrite)
    s = ds.summary()
    console.print(
        f"phantom: {s['patients']} subjects, {s['slices']} slices at {size}² (vendors {','.join(s['vendors'])}) -> "
        f"{out}"
    )


@import_app.command("acdc")
def import_acdc_cmd(
    root: Path = typer.Argument(..., help="ACDC folder holding patientXXX/ subfolders."),
    out: Path = typer.Option(..., "--out", help="Output directory (prepared dataset)."),
    crop: int = _CROP,
    size: Optional[int] = _SIZE,
    strict: bool = _STRICT,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Import ACDC (ED and ES frames from Info.cfg; labels kept in ACDC numbering)."""
    _guard(out, ROOT=root)
    _print_summary(
        import_acdc(
            root,
            out=out,
            config=PreprocessConfig(crop=crop, size=size),
            strict=strict,
            overwrite=overwrite,
            progress=not _state.QUIET,
        )
    )


@import_app.command("mnms")
def import_mnms_cmd(
    root: Path = typer.Argument(..., help="M&Ms folder holding <code>/<code>_sa.nii.gz (searched recursively)."),
    info: Path = typer.Option(
        ..., "--info", help="M&Ms information CSV (External code, Vendor, ED, ES; 0-based frames)."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (prepared dataset)."),
    crop: int = _CROP,
    size: Optional[int] = _SIZE,
    strict: bool = _STRICT,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Import M&Ms-1 (labels remapped to ACDC numbering: 1 RV, 2 MYO, 3 LV)."""
    _guard(out, ROOT=root, **{"--info": info})
    _print_summary(
        import_mnms(
            root,
            info=info,
            out=out,
            config=PreprocessConfig(crop=crop, size=size),
            strict=strict,
            overwrite=overwrite,
            progress=not _state.QUIET,
        )
    )


@import_app.command("folder")
def import_folder_cmd(
    root: Path = typer.Argument(
        ..., help="Folder of NIfTI pairs: <name>.nii.gz with <name>_gt.nii.gz (or <name>_mask.nii.gz)."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (prepared dataset)."),
    crop: int = _CROP,
    size: Optional[int] = _SIZE,
    strict: bool = _STRICT,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Import a generic folder of image/mask NIfTI pairs (labels in ACDC numbering, one patient per pair)."""
    _guard(out, ROOT=root)
    _print_summary(
        import_folder(
            root,
            out=out,
            config=PreprocessConfig(crop=crop, size=size),
            strict=strict,
            overwrite=overwrite,
            progress=not _state.QUIET,
        )
    )


@import_app.command("sunnybrook")
def import_sunnybrook_cmd(
    root: Path = typer.Argument(
        ..., help="Sunnybrook folder: link.csv, dicoms/<patient_id>/, contourfiles/<original_id>/."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (prepared dataset)."),
    crop: int = _CROP,
    size: Optional[int] = _SIZE,
    strict: bool = typer.Option(
        False, "--strict", help="Treat a bad file (DICOM or contour) as an error instead of skipping it."
    ),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Import Sunnybrook DICOM + expert contours (LV from the endocardium, MYO where an epicardium exists; RV
    unknown)."""
    _guard(out, ROOT=root)
    _print_summary(
        import_sunnybrook(
            root,
            out=out,
            config=PreprocessConfig(crop=crop, size=size),
            strict=strict,
            overwrite=overwrite,
            progress=not _state.QUIET,
        )
    )


@import_app.command("dicom")
def import_dicom_cmd(
    root: Path = typer.Argument(..., help="Folder with one sub-folder of single-frame *.dcm images per patient."),
    masks_from: Path = typer.Option(
        ...,
        "--masks-from",
        help="Folder with one sub-folder per patient: Sunnybrook-style contour files or <InstanceNumber>.npy/.png "
             "label masks.",
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (prepared dataset)."),
    mask_format: str = typer.Option(
        "auto", "--mask-format", help="contours | labels | auto (contours when *contour-manual.txt files exist)."
    ),
    annotated: str = typer.Option(
        "RV,MYO,LV",
        "--annotated",
        help="Structures the label masks annotate (comma-separated); others are unknown. Ignored for contours (LV, and "
             "MYO where an epicardium exists).",
    ),
    link: Optional[Path] = typer.Option(
        None, "--link", help="CSV patient_id,original_id mapping DICOM folder names to mask folder names."
    ),
    crop: int = _CROP,
    size: Optional[int] = _SIZE,
    strict: bool = typer.Option(
        False, "--strict", help="Treat a bad file (DICOM or mask) as an error instead of skipping it."
    ),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Import a folder of DICOM series plus a mask source (contour files or per-image label masks)."""
    _guard(out, ROOT=root, **{"--masks-from": masks_from, "--link": link})
    if mask_format not in ("auto", "contours", "labels"):
        raise UsageError(f"--mask-format {mask_format!r}: expected contours, labels or auto")
    structures = [s.strip() for s in annotated.split(",") if s.strip()]
    bad = [s for s in structures if s not in STRUCTURES]
    if bad or not structures:
        raise UsageError(f"--annotated {annotated!r}: unknown structure(s) {bad}; "
                         f"expected a comma-separated subset of {list(STRUCTURES)}")
    _print_summary(
        import_dicom(
            root,
            masks_from=masks_from,
            out=out,
            config=PreprocessConfig(crop=crop, size=size),
            mask_format=mask_format,
            annotated=structures,
            link=link,
            strict=strict,
            overwrite=overwrite,
            progress=not _state.QUIET,
        )
    )


@data_app.command("info")
def info_cmd(
    path: Path = typer.Argument(..., help="Prepared dataset directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    verify: bool = typer.Option(False, "--verify", help="Recompute the fingerprint and check every value."),
) -> None:
    """Patients, slices, vendors, labels, shape, spacing and fingerprint of a prepared dataset."""
    ds = read_dataset(path, verify=verify)
    s = ds.summary()
    s["fingerprint"] = ds.meta.get("fingerprint")
    s["annotated_structures"] = s.pop("labels")
    if as_json:
        typer.echo(json.dumps(s, indent=2))
        return
    table = Table(title=str(path), show_header=False)
    sp = s["spacing_mm"]
    rows = [
        ("patients", str(s["patients"])),
        ("slices", str(s["slices"])),
        ("shape", "×".join(map(str, s["shape"]))),
        ("vendors", ", ".join(s["vendors"]) or "unknown"),
        ("labels", "none (image-only set: no masks)" if not ds.meta.get("has_masks", True) else
         "+".join(s["annotated_structures"]) + ("" if len(s["annotated_structures"]) == 3 else "  (others unknown)")),
        ("spacing", "unknown" if sp is None else f"{sp[0]:.3f}–{sp[1]:.3f} mm"),
        ("fingerprint", str(s["fingerprint"])),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


from . import data_files  # noqa: E402,F401 - registers `data import images` and `data export` on the apps above
