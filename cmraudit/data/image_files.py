"""Reading and writing 2-D image files of other tools: PNG, NIfTI, ``.npy`` / ``.npz``.

Used by ``cmraudit data import images`` and ``cmraudit data export``. Every reader returns a
list of 2-D slices (a 2-D file gives one slice; a 3-D NIfTI ``[H, W, N]`` or a 3-D ``.npy``
``[N, H, W]`` gives one slice per index) and raises :class:`~cmraudit.errors.DataError`
naming the file when it cannot.

Conventions (stated, not guessed):

* PNG grey: 8-bit (``L``), 16-bit (``I;16``) and 32-bit integer (``I``) values are read as they
  are stored. RGB(A) and palette PNGs: when R = G = B everywhere the grey value is that channel,
  otherwise the luminance ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, kept as a float, not
  rounded); alpha is ignored.
* NIfTI: the stored array without reorientation; a 3-D volume ``[H, W, N]`` is taken slice by
  slice along the last axis (the layout ``cmraudit`` writes); in-plane spacing from the header.
* ``.npy``: ``[H, W]`` or ``[N, H, W]``. ``.npz``: the array named ``images``/``image``
  (``masks``/``mask`` for masks), else the only array in the file.
* Colour-coded masks (``--mask-palette``): every pixel is decoded to the nearest palette colour
  (Euclidean distance in 0–255 RGB); a pixel farther than the tolerance from every palette
  colour is an error. The ``jet`` palette is matplotlib's ``jet`` colour map at label values
  0, 1, 2, 3 over the range 0–3, i.e. what ``plt.imsave(mask, cmap="jet", vmin=0, vmax=3)``
  writes (the reference study's colour-coded masks).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError

# the per-slice columns of an export's ids.csv besides the file name (read back by data import images --ids)
ID_COLUMNS = ("patient_id", "vendor", "frame", "slice_index", "source", "spacing_y_mm", "spacing_x_mm", "annotated")

SUFFIXES = (".nii.gz", ".nii", ".png", ".npy", ".npz")
#: matplotlib jet at 0, 1/3, 2/3, 1 (rounded to 0–255): label value → RGB
JET_PALETTE = {0: (0, 0, 128), 1: (0, 212, 255), 2: (255, 230, 0), 3: (128, 0, 0)}
DEFAULT_TOLERANCE = 40.0
#: label conventions: stored value → ACDC label (0 bg, 1 RV, 2 MYO, 3 LV)
LABEL_CONVENTIONS = {"acdc": {0: 0, 1: 1, 2: 2, 3: 3}, "mnms": {0: 0, 1: 3, 2: 2, 3: 1}}
_NAMES = {"background": 0, "bg": 0, "RV": 1, "MYO": 2, "LV": 3}


def file_kind(path: str | os.PathLike) -> str | None:
    """The matched suffix (``.png``, ``.nii.gz``, …) or None for an unsupported file."""
    name = Path(path).name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def file_stem(path: str | os.PathLike) -> str:
    """File name without its image suffix (``a.nii.gz`` → ``a``)."""
    name = Path(path).name
    kind = file_kind(name)
    return name[: -len(kind)] if kind else Path(name).stem


def _grey_from_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb[..., :3].astype(np.float64)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _open_png(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable PNG image ({type(e).__name__}: {e})") from e
    if im.format != "PNG":
        raise DataError(f"{path}: not a PNG file (it holds {im.format} data)")
    return im


def read_png(path: Path, *, rgb: bool = False) -> np.ndarray:
    """Grey PNG as stored (float64 [H, W]); RGB(A)/palette by the module's rule; ``rgb=True``: [H, W, 3] uint8."""
    im = _open_png(path)
    if rgb:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    if im.mode in ("L", "I", "F", "1") or im.mode.startswith("I;16"):
        return np.asarray(im).astype(np.float64)
    if im.mode == "LA":
        return np.asarray(im)[..., 0].astype(np.float64)
    return _grey_from_rgb(np.asarray(im.convert("RGB")))


def _read_nifti(path: Path) -> tuple[list[np.ndarray], tuple[float, float] | None]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        arr = np.asanyarray(img.dataobj)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:2])
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for a corrupt file
        raise DataError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e})") from e
    arr = arr.reshape(arr.shape[:3]) if arr.ndim > 3 and all(s == 1 for s in arr.shape[3:]) else arr
    if arr.ndim == 2:
        slices = [arr]
    elif arr.ndim == 3:
        slices = [arr[:, :, k] for k in range(arr.shape[2])]
    else:
        raise DataError(f"{path}: NIfTI with shape {arr.shape}; expected 2-D [H, W] or 3-D [H, W, N]")
    spacing = zooms if len(zooms) == 2 and all(np.isfinite(zooms)) and min(zooms) > 0 else None
    return [np.asarray(s, dtype=np.float64) for s in slices], spacing


def _read_numpy(path: Path, *, mask: bool) -> list[np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                keys = list(data.keys())
                wanted = ("masks", "mask") if mask else ("images", "image")
                key = next((k for k in wanted if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(
                        f"{path}: .npz with arrays {keys}; expected one array or one named {' or '.join(wanted)}"
                    )
                arr = data[key]
        else:
            arr = data
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: not a readable numpy file ({type(e).__name__}: {e})") from e
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: array of dtype {arr.dtype}; expected numbers")
    if arr.ndim == 2:
        return [arr.astype(np.float64)]
    if arr.ndim == 3:
        return [arr[k].astype(np.float64) for k in range(arr.shape[0])]
    raise DataError(f"{path}: array of shape {arr.shape}; expected [H, W] or [N, H, W]")


def read_slices(path: str | os.PathLike) -> tuple[list[np.ndarray], tuple[float, float] | None]:
    """(2-D float64 slices, in-plane spacing in mm or None) of one image file."""
    path = Path(path)
    kind = file_kind(path)
    if kind is None:
        raise DataError(f"{path}: not an image file (supported: {', '.join(SUFFIXES)})")
    if kind == ".png":
        slices, spacing = [read_png(path)], None
    elif kind in (".nii", ".nii.gz"):
        slices, spacing = _read_nifti(path)
    else:
        slices, spacing = _read_numpy(path, mask=False), None
    if not slices:
        raise DataError(f"{path}: no slices (an empty stack of images)")
    for s in slices:
        if s.size == 0 or not np.isfinite(s).all():
            raise DataError(f"{path}: empty image or NaN/Inf values")
    return slices, spacing


# ------------------------------------------------------------------ masks
def parse_labels(spec: str) -> dict[int, int]:
    """Stored value → ACDC label for ``acdc``, ``mnms`` or a custom map ``VALUE=STRUCTURE,…``.

    E.g. ``0=bg,85=RV,170=MYO,255=LV``.
    """
    if spec.lower() in LABEL_CONVENTIONS:
        return dict(LABEL_CONVENTIONS[spec.lower()])
    out: dict[int, int] = {}
    for item in (p.strip() for p in spec.split(",") if p.strip()):
        value, _, name = item.partition("=")
        if name.strip() not in _NAMES or not value.strip().lstrip("-").isdigit():
            raise UsageError(
                f"--labels {spec!r}: {item!r} is not VALUE=STRUCTURE; expected acdc, mnms or e.g. "
                "'0=bg,1=LV,2=MYO,3=RV' (structures: background/bg, RV, MYO, LV)"
            )
        if int(value) in out:
            raise UsageError(f"--labels {spec!r}: value {int(value)} is given twice; give each stored value one "
                             "structure")
        out[int(value)] = _NAMES[name.strip()]
    if not out:
        raise UsageError(f"--labels {spec!r}: empty map; expected acdc, mnms or VALUE=STRUCTURE pairs")
    out.setdefault(0, 0)
    return out


def load_palette(spec: str) -> dict[int, tuple[int, int, int]]:
    """``jet`` or a JSON file ``{"VALUE": [R, G, B], …}`` (label values as in ``--labels``, colours 0–255)."""
    if spec == "jet":
        return dict(JET_PALETTE)
    path = Path(spec)
    try:
        raw = json.loads(path.read_text())
        pal = {int(k): tuple(int(c) for c in v) for k, v in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise UsageError(
            f"--mask-palette {spec}: expected 'jet' or a JSON file mapping label values to [R, G, B] ({e})"
        ) from e
    if not pal or any(len(c) != 3 or min(c) < 0 or max(c) > 255 for c in pal.values()):
        raise UsageError(f"--mask-palette {spec}: every colour must be [R, G, B] with values 0–255")
    return pal


def decode_palette(
    rgb: np.ndarray, palette: dict[int, tuple[int, int, int]], *, tolerance: float, where: str
) -> np.ndarray:
    """Label value of the nearest palette colour per pixel; a pixel beyond ``tolerance`` is a DataError."""
    values = np.array(sorted(palette), dtype=np.int64)
    colours = np.array([palette[v] for v in values], dtype=np.float64)
    flat = rgb.reshape(-1, 3).astype(np.float64)
    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    d = np.sqrt(((uniq[:, None, :] - colours[None]) ** 2).sum(-1))
    best = d.argmin(1)
    far = d[np.arange(len(uniq)), best] > tolerance
    if far.any():
        c = uniq[far][0].astype(int).tolist()
        n = int(np.isin(inv.ravel(), np.flatnonzero(far)).sum())
        raise DataError(
            f"{where}: {n} pixel(s) of colour {c} are farther than {tolerance:g} from every palette colour "
            f"(nearest {colours[best[far][0]].astype(int).tolist()}); check --mask-palette or raise --palette-tolerance"
        )
    return values[best][inv.ravel()].reshape(rgb.shape[:2])


def read_mask_slices(
    path: str | os.PathLike,
    *,
    labels: dict[int, int],
    palette: dict | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[np.ndarray]:
    """ACDC-numbered uint8 masks of one mask file (label image, or colour-coded PNG with ``palette``)."""
    path = Path(path)
    kind = file_kind(path)
    if kind is None:
        raise DataError(f"{path}: not a mask image file (supported: {', '.join(SUFFIXES)})")
    if palette is not None:
        if kind != ".png":
            raise DataError(f"{path}: --mask-palette decodes colour PNG masks only; this is a {kind} file")
        raw = [decode_palette(read_png(path, rgb=True), palette, tolerance=tolerance, where=str(path))]
    elif kind == ".png":
        im = _open_png(path)
        if im.mode in ("RGB", "RGBA", "P", "PA"):
            rgb = np.asarray(im.convert("RGB"))
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                raise DataError(f"{path}: colour mask PNG; pass --mask-palette jet (or a PALETTE.json) to decode it")
        raw = [read_png(path)]
    elif kind in (".nii", ".nii.gz"):
        raw = _read_nifti(path)[0]
    else:
        raw = _read_numpy(path, mask=True)
    lut_values = np.array(sorted(labels), dtype=np.int64)
    out = []
    for m in raw:
        if not np.all(np.equal(np.mod(m, 1), 0)):
            raise DataError(f"{path}: mask holds non-integer values; expected label values {lut_values.tolist()}")
        mi = m.astype(np.int64)
        bad = np.setdiff1d(np.unique(mi), lut_values)
        if bad.size:
            raise DataError(
                f"{path}: mask values {bad[:8].tolist()} are not in the label map {lut_values.tolist()} (see --labels)"
            )
        out.append(np.array([labels[v] for v in lut_values], dtype=np.uint8)[np.searchsorted(lut_values, mi)])
    return out


# ------------------------------------------------------------------ writers
def write_png(path: Path, arr: np.ndarray, *, bits: int) -> None:
    """Write a grey PNG of integer values (8 or 16 bit)."""
    from PIL import Image

    if bits == 8:
        Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L").save(path)
    else:
        Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint16)).save(path)


def write_nifti(path: Path, arr: np.ndarray, *, spacing: tuple[float, float] | None) -> None:
    """Write a 2-D NIfTI ``[H, W]`` with the in-plane spacing (1 mm when unknown)."""
    import nibabel as nib

    zooms = tuple(float(s) for s in spacing) if spacing is not None and np.isfinite(spacing).all() else (1.0, 1.0)
    img = nib.Nifti1Image(np.ascontiguousarray(arr), np.diag([*zooms, 1.0, 1.0]))
    img.header.set_zooms(zooms)
    nib.save(img, str(path))
