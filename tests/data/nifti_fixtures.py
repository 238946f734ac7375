"""Tiny NIfTI fixtures in the ACDC, M&Ms and folder layouts, written by the tests themselves."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def heart_mask(shape, center, *, r_lv=6, wall=3, rv=True, labels=(1, 2, 3)) -> np.ndarray:
    """A disc LV, ring MYO, crescent RV. ``labels`` = (RV, MYO, LV) values to write."""
    rv_l, myo_l, lv_l = labels
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = np.hypot(yy - center[0], xx - center[1])
    m = np.zeros(shape, np.uint8)
    if rv:
        d_rv = np.hypot(yy - center[0], xx - (center[1] - r_lv - wall - 2))
        m[(d_rv < r_lv + 1) & (d >= r_lv + wall)] = rv_l
    m[d < r_lv + wall] = myo_l
    m[d < r_lv] = lv_l
    return m


def save_nii(path: Path, arr: np.ndarray, zooms=(1.5, 1.5, 10.0)) -> None:
    img = nib.Nifti1Image(arr, np.diag([*zooms[:3], 1.0]))
    img.header.set_zooms(tuple(zooms[: arr.ndim]) + (1.0,) * max(0, arr.ndim - len(zooms)))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def volume(rng, shape=(40, 48, 3), labelled=(0, 1), center=(20, 26), labels=(1, 2, 3)):
    img = rng.normal(100, 20, shape).astype(np.float32)
    msk = np.zeros(shape, np.uint8)
    for z in labelled:
        msk[:, :, z] = heart_mask(shape[:2], center, labels=labels)
        img[:, :, z][msk[:, :, z] == labels[2]] += 200  # bright blood pool
    return img, msk


def make_acdc(root: Path, n_patients=3, *, seed=0, ed=1, es=4) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(1, n_patients + 1):
        pid = f"patient{i:03d}"
        pdir = root / pid
        pdir.mkdir(parents=True)
        (pdir / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: NOR\nHeight: 180\nNbFrame: 10\nWeight: 80\n")
        for fr in (ed, es):
            img, msk = volume(rng, center=(20 + i, 26))
            save_nii(pdir / f"{pid}_frame{fr:02d}.nii.gz", img)
            save_nii(pdir / f"{pid}_frame{fr:02d}_gt.nii.gz", msk)
    return root


def make_mnms(root: Path, n_patients=3, *, seed=0, T=5, ed=0, es=3, vendors="ABCD") -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    rows = ["External code,VendorName,Vendor,Centre,ED,ES"]
    for i in range(n_patients):
        code = f"A{i}X{i}Y{i}"
        img = np.zeros((40, 48, 3, T), np.float32)
        msk = np.zeros((40, 48, 3, T), np.uint8)
        for t in (ed, es):
            # M&Ms numbering: 1 LV, 2 MYO, 3 RV
            v, m = volume(rng, labels=(3, 2, 1))
            img[..., t], msk[..., t] = v, m
        save_nii(root / "Training" / "Labeled" / code / f"{code}_sa.nii.gz", img, zooms=(1.2, 1.2, 9.0, 1.0))
        save_nii(root / "Training" / "Labeled" / code / f"{code}_sa_gt.nii.gz", msk, zooms=(1.2, 1.2, 9.0, 1.0))
        rows.append(f"{code},Siemens,{vendors[i % len(vendors)]},1,{ed},{es}")
    csv_path = root / "info.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return root, csv_path


def make_folder(root: Path, n=3, *, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, msk = volume(rng)
        save_nii(root / f"case{i}.nii.gz", img)
        save_nii(root / f"case{i}_gt.nii.gz", msk)
    return root
