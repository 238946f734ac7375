"""NIfTI importers: ACDC, M&Ms-1 and a generic folder of image/mask pairs (REFERENCES.md § Data layouts).

All keep only labelled slices of the ED and ES frames (ACDC from ``Info.cfg``, 1-based;
M&Ms from the information CSV, 0-based), store labels in ACDC numbering (M&Ms is remapped
1 LV→3, 2 MYO→2, 3 RV→1), and take in-plane spacing from the NIfTI header.
"""
from __future__ import annotations

import csv
import re
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..preprocess import PreprocessConfig
from ._common import ImportSummary, PatientRecords, SliceRecord, assemble

MNMS_TO_ACDC = np.array([0, 3, 2, 1], dtype=np.uint8)  # index = M&Ms label, value = ACDC label
_NII = (".nii.gz", ".nii")


def load_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """(array, zooms) of a NIfTI file; any read failure is a DataError naming the file."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj, dtype=np.float64)
        zooms = tuple(float(z) for z in img.header.get_zooms())
    except Exception as e:  # noqa: BLE001 - nibabel raises many kinds for corrupt files
        raise DataError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e})") from e
    return arr, zooms


def _as_labels(arr: np.ndarray, path: Path) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: mask contains NaN or Inf")
    if np.any(np.mod(arr, 1) != 0) or arr.min(initial=0) < 0 or arr.max(initial=0) > 3:
        bad = np.unique(arr[(np.mod(arr, 1) != 0) | (arr < 0) | (arr > 3)])[:5]
        raise DataError(f"{path}: mask labels outside 0..3 (found {bad.tolist()})")
    return arr.astype(np.uint8)


def _volume_slices(
    image: np.ndarray, mask: np.ndarray, *, frame: str, spacing, img_path: Path, mask_path: Path
) -> list[SliceRecord]:
    if image.shape != mask.shape:
        raise DataError(f"{mask_path}: mask shape {mask.shape} differs from image {img_path.name} shape {image.shape}")
    if not np.isfinite(image).all():
        raise DataError(f"{img_path}: image contains NaN or Inf")
    if image.ndim == 2:
        image, mask = image[..., None], mask[..., None]
    if image.ndim != 3:
        raise DataError(f"{img_path}: expected a 2-D or 3-D volume, got shape {image.shape}")
    out = []
    for z in range(image.shape[2]):
        m = mask[:, :, z]
        if m.any():
            out.append(SliceRecord(image=image[:, :, z], mask=m, frame=frame, slice_index=z, spacing_mm=spacing))
    return out


# ------------------------------------------------------------------------- ACDC
def _read_info_cfg(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from e
    info = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def _load_acdc_patient(pdir: Path) -> PatientRecords:
    cfg = pdir / "Info.cfg"
    info = _read_info_cfg(cfg)
    pid = pdir.name
    slices: list[SliceRecord] = []
    for phase in ("ED", "ES"):
        if phase not in info:
            raise DataError(f"{cfg}: no {phase} entry")
        try:
            frame = int(info[phase])
        except ValueError as e:
            raise DataError(f"{cfg}: {phase} is not a frame number ({info[phase]!r})") from e
        img_p = pdir / f"{pid}_frame{frame:02d}.nii.gz"
        gt_p = pdir / f"{pid}_frame{frame:02d}_gt.nii.gz"
        if not img_p.exists() or not gt_p.exists():
            raise DataError(
                f"{pdir}: missing {img_p.name if not img_p.exists() else gt_p.name} for {phase} (frame {frame}, "
                "1-based)"
            )
        img, zooms = load_nifti(img_p)
        gt, _ = load_nifti(gt_p)
        slices += _volume_slices(
            img, _as_labels(gt, gt_p), frame=phase, spacing=zooms[:2], img_path=img_p, mask_path=gt_p
        )
    if not slices:
        raise DataError(f"{pdir}: patient {pid} has no labelled slices in its ED/ES frames")
    return PatientRecords(patient_id=pid, vendor="", slices=slices, source_file=str(pdir))


def import_acdc(
    root,
    *,
    out,
    config: PreprocessConfig | None = None,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> ImportSummary:
    """Import ACDC: every ``patientXXX/Info.cfg`` below ``root`` (ED and ES frames, labels kept)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    pdirs = sorted({p.parent for p in root.rglob("Info.cfg")})
    if not pdirs:
        raise DataError(f"{root}: no ACDC patients found (expected patientXXX/Info.cfg below it)")
    loaders = [(str(p), partial(_load_acdc_patient, p)) for p in pdirs]
    return assemble(loaders, out=out, config=config or PreprocessConfig(), strict=strict, overwrite=overwrite,
                    source="acdc", provenance={"root": root.name}, progress=progress)


# ------------------------------------------------------------------------ M&Ms
def read_mnms_info(path: Path) -> dict[str, dict]:
    """Rows of the M&Ms information CSV keyed by external code: vendor, ED, ES (0-based)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = {(h or "").strip(): h for h in (reader.fieldnames or [])}
            need = ["External code", "Vendor", "ED", "ES"]
            missing = [c for c in need if c not in fields]
            if missing:
                raise DataError(
                    f"{path}: unreadable M&Ms information CSV: missing columns {missing} (found {list(fields)})"
                )
            rows = {}
            for i, row in enumerate(reader, start=2):
                code = (row[fields["External code"]] or "").strip()
                if not code:
                    continue
                if code in rows:
                    raise DataError(f"{path}: line {i}: External code {code!r} appears twice; "
                                    "each patient must have exactly one row")
                try:
                    rows[code] = {
                        "vendor": (row[fields["Vendor"]] or "").strip(),
                        "ED": int(float(row[fields["ED"]])),
                        "ES": int(float(row[fields["ES"]])),
                    }
                except (TypeError, ValueError) as e:
                    raise DataError(f"{path}: line {i}: ED/ES are not frame numbers ({e})") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: unreadable M&Ms information CSV ({e})") from e
    if not rows:
        raise DataError(f"{path}: M&Ms information CSV has no patient rows")
    return rows


def _load_mnms_patient(img_p: Path, info: dict[str, dict]) -> PatientRecords:
    code = img_p.name.split("_sa")[0]
    gt_p = img_p.with_name(f"{code}_sa_gt.nii.gz")
    if code not in info:
        raise DataError(f"{img_p}: patient {code} is not in the information CSV")
    if not gt_p.exists():
        raise DataError(f"{img_p}: no label file {gt_p.name}")
    img, zooms = load_nifti(img_p)
    gt, _ = load_nifti(gt_p)
    if img.shape != gt.shape:
        raise DataError(f"{gt_p}: mask shape {gt.shape} differs from image shape {img.shape}")
    if img.ndim != 4:
        raise DataError(f"{img_p}: expected a 4-D (H×W×Z×T) cine volume, got shape {img.shape}")
    labels = _as_labels(gt, gt_p)
    slices: list[SliceRecord] = []
    for phase in ("ED", "ES"):
        t = info[code][phase]
        if not 0 <= t < img.shape[3]:
            raise DataError(f"{img_p}: {phase} frame {t} (0-based) outside 0..{img.shape[3] - 1}")
        slices += _volume_slices(
            img[..., t], MNMS_TO_ACDC[labels[..., t]], frame=phase, spacing=zooms[:2], img_path=img_p, mask_path=gt_p
        )
    if not slices:
        raise DataError(f"{img_p}: patient {code} has no labelled slices in its ED/ES frames")
    return PatientRecords(patient_id=code, vendor=info[code]["vendor"], slices=slices, source_file=str(img_p))


def import_mnms(
    root,
    *,
    info,
    out,
    config: PreprocessConfig | None = None,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> ImportSummary:
    """Import M&Ms-1: ``<code>/<code>_sa.nii.gz`` + ``_sa_gt`` below ``root``, vendor and ED/ES from ``info``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    rows = read_mnms_info(Path(info))
    files = sorted(p for p in root.rglob("*_sa.nii.gz"))
    if not files:
        raise DataError(f"{root}: no M&Ms patients found (expected <code>/<code>_sa.nii.gz below it)")
    loaders = [(str(p), partial(_load_mnms_patient, p, rows)) for p in files]
    return assemble(
        loaders,
        out=out,
        config=config or PreprocessConfig(),
        strict=strict,
        overwrite=overwrite,
        source="mnms",
        provenance={"root": root.name, "info": Path(info).name, "relabel": "M&Ms 1 LV,2 MYO,3 RV -> ACDC"},
        progress=progress,
    )


# ---------------------------------------------------------------------- folder
_MASK_SUFFIX = re.compile(r"_(gt|mask|seg|label)$")


def _strip_ext(name: str) -> str:
    for ext in _NII:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _load_folder_pair(img_p: Path, mask_p: Path) -> PatientRecords:
    img, zooms = load_nifti(img_p)
    gt, _ = load_nifti(mask_p)
    pid = _strip_ext(img_p.name)
    slices = _volume_slices(
        img,
        _as_labels(gt, mask_p),
        frame="",
        spacing=zooms[:2] if len(zooms) >= 2 else None,
        img_path=img_p,
        mask_path=mask_p,
    )
    if not slices:
        raise DataError(f"{mask_p}: no labelled slice")
    return PatientRecords(patient_id=pid, vendor="", slices=slices, source_file=str(img_p))


def import_folder(
    root,
    *,
    out,
    config: PreprocessConfig | None = None,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> ImportSummary:
    """Import a folder of NIfTI pairs ``<name>.nii.gz`` + ``<name>_gt|_mask|_seg|_label.nii.gz`` (one patient per
    pair)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(_NII))
    masks = {}
    images = []
    for p in files:
        stem = _strip_ext(p.name)
        m = _MASK_SUFFIX.search(stem)
        if m:
            masks[(p.parent, stem[: m.start()])] = p
        else:
            images.append(p)
    pairs = [(p, masks.get((p.parent, _strip_ext(p.name)))) for p in images]
    if not pairs:
        raise DataError(f"{root}: no NIfTI image/mask pairs found (expected <name>.nii.gz with <name>_gt.nii.gz)")
    loaders = []
    for img_p, mask_p in pairs:
        if mask_p is None:
            def _missing(p=img_p):
                raise DataError(f"{p}: no mask file beside it (<name>_gt.nii.gz or _mask/_seg/_label)")
            loaders.append((str(img_p), _missing))
        else:
            loaders.append((str(img_p), partial(_load_folder_pair, img_p, mask_p)))
    return assemble(loaders, out=out, config=config or PreprocessConfig(), strict=strict, overwrite=overwrite,
                    source="folder", provenance={"root": root.name}, progress=progress)
