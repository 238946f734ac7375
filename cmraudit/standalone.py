"""``cmraudit fit`` and ``cmraudit sample`` as Python functions (re-exported by :mod:`cmraudit.pipeline`).

Both check every output path first (:func:`cmraudit.io_guard.check_output`), validate their inputs on entry,
map a plugin's own exceptions to exit 3 and leave nothing behind when they fail.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .data.dataset import Dataset, write_dataset
from .data.montage import MONTAGE_SIGNATURE
from .dp import require_dp_support
from .errors import DataError, UsageError
from .generators.checkpoint import load_generator
from .generators.registry import call_plugin, get_plugin
from .io_guard import (
    MARKER, _holds_signature, _register, check_output, make_output_dir, remove_if_created, replace_dir, write_errors,
    write_text_atomic,
)
from .run_parts import (
    _synthetic_for_spacing, export_nifti, labelled_as, make_generator, require_masks, save_grid,
)
from .validate import check_seed, read_input_dataset, trained_size


def fit_generator(*, generator: str, data: str | os.PathLike, out: str | os.PathLike, preset: str = "quick",
                  seed: int = 0, device: str = "auto", params: dict | None = None,
                  work_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True, dp=None,
                  overwrite: bool = False):
    """Fit a registered generator on a prepared dataset and save it to ``out`` (rank 0 only under torchrun).

    ``dp``: a :class:`cmraudit.dp.DPConfig` (patient-level DP-SGD) or None."""
    if dp is not None:
        require_dp_support(name=generator, tags=get_plugin(generator).cls.tags, dp=dp)
    check_seed(seed)
    work = Path(work_dir or Path(out).with_name(Path(out).name + ".work"))
    check_output(out, inputs=[("--data", data), ("--work-dir", work)], option="--out", produces="model")
    check_output(work, inputs=[("--data", data), ("--out", out)], option="--work-dir", produces="work")
    if Path(out).exists() and not overwrite:
        raise DataError(f"{out}: output already exists (pass --overwrite to replace it)")
    if resume and not work.is_dir():
        raise UsageError(f"--resume: no training state in --work-dir {work} (it does not exist); run without --resume")
    get_plugin(generator)
    train = read_input_dataset(data, option="--data")
    require_masks(train, str(data))
    gen = make_generator(generator, preset=preset, params=params, device=device, image_size=int(train.shape[0]))
    call_plugin(generator, "validate_params", gen.validate_params)
    kw = {"work_dir": work, "resume": resume}
    fingerprint = str(train.meta.get("fingerprint") or train.fingerprint())
    if resume:
        _check_training_data(work, fingerprint=fingerprint, seed=seed, data=data)
    created = not work.exists()
    make_output_dir(work, kind="work")  # marked, so a later fit or --resume may write into it
    if not resume or not (work / TRAINING_DATA).is_file():
        write_text_atomic(work / TRAINING_DATA, json.dumps({"fingerprint": fingerprint, "seed": int(seed),
                                                           "data": str(data)}, indent=2))
    try:
        call_plugin(generator, "fit", gen.fit, train, seed=seed, progress=progress, **kw,
                    **({} if dp is None else {"dp": dp}))
        call_plugin(generator, "save", gen.save, out)
    finally:
        # keep a work dir that holds training state (for --resume); remove one this call made and left empty
        if created and work.is_dir() and {p.name for p in work.iterdir()} <= {MARKER, TRAINING_DATA}:
            remove_if_created(work, True)
    return gen


NIFTI_ENTRIES = {MARKER, "images.nii.gz", "masks.nii.gz"}  # all that export_nifti writes
TRAINING_DATA = "training_data.json"  # in --work-dir: what its training state was fitted on (fit --resume)


def _check_training_data(work: Path, *, fingerprint: str, seed: int, data) -> None:
    """``fit --resume``: refuse, before anything is trained, training state fitted on other data or with another seed
    (resuming it would train on top of other patients: the audit's members would be wrong). Work dirs from before
    this record cannot be checked and resume as before."""
    path = work / TRAINING_DATA
    try:
        old = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        return
    if old.get("fingerprint") != fingerprint:
        raise UsageError(f"--resume: --work-dir {work} holds training state fitted on other data ({old.get('data')}, "
                         f"fingerprint {old.get('fingerprint')}), not on --data {data} (fingerprint {fingerprint}); "
                         "resume with the same --data, or use a fresh --work-dir")
    if old.get("seed") != int(seed):
        raise UsageError(f"--resume: --work-dir {work} holds training state fitted with --seed {old.get('seed')}, "
                         f"this fit has --seed {seed}; resume with the same --seed, or use a fresh --work-dir")


def sample_generator(*, model: str | os.PathLike, out: str | os.PathLike, n: int | None = None,
                     masks: str | os.PathLike | None = None, seed: int = 0, vendor: str | None = None,
                     nifti: bool = True, grid: bool = True, overwrite: bool = False, progress: bool = False) -> Dataset:
    """Load a saved generator, draw ``n`` slices (or images for the masks of dataset ``masks``) and write them."""
    out = Path(out)
    nifti_dir, png = out.with_name(out.name + "_nifti"), out.with_name(out.name + ".png")
    inputs = [("--model", model), ("--masks", masks)]
    check_output(out, inputs=inputs, option="--out", produces="dataset")
    if nifti:
        check_output(nifti_dir, inputs=inputs, option="--out (its NIfTI folder)", produces="nifti")
    if grid:
        check_output(png, inputs=inputs, option="--out (its PNG grid)", kind="file")
    if out.exists() and not overwrite:
        raise DataError(f"{out}: output already exists (pass --overwrite to replace it)")
    for sibling in ([nifti_dir] if nifti else []) + ([png] if grid else []):
        if sibling.exists() and not (overwrite and out.is_dir() and (out / MARKER).is_file()):
            raise DataError(f"{sibling}: already exists and is not part of an earlier cmraudit output at {out}; "
                            f"move it or choose another --out")
    if grid and png.is_file() and not _holds_signature(png, MONTAGE_SIGNATURE):
        raise DataError(f"{png}: already exists and cmraudit did not write it (no {MONTAGE_SIGNATURE!r} mark); "
                        "cmraudit never replaces it — move it or choose another --out")
    if nifti and nifti_dir.is_dir():  # its marker lists no entries: only the two volumes may be there
        extra = sorted(p.name for p in nifti_dir.iterdir() if p.name not in NIFTI_ENTRIES)
        if extra:
            raise UsageError(f"--out {out}: its NIfTI folder {nifti_dir} holds {', '.join(extra[:3])}, which "
                             "cmraudit did not write; cmraudit never writes into such a folder — move them away")
    if n is not None and int(n) < 1:
        raise UsageError(f"--n {n}: must be at least 1")
    check_seed(seed)
    gen = load_generator(model)
    name = gen.name
    kw = {"progress": progress, **({"vendor": vendor} if vendor is not None else {})}
    if masks is not None:
        ref = read_input_dataset(masks, option="--masks")
        _check_mask_size(ref, masks, gen, model)
        drawn = call_plugin(name, "sample", gen.sample, masks=np.asarray(ref.masks), seed=seed, **kw)
        syn = labelled_as(_synthetic_for_spacing(drawn, ref), ref)
    else:
        syn = call_plugin(name, "sample", gen.sample, n=n, seed=seed, **kw)
    # all three are built in one hidden folder beside OUT and renamed into place only when all are written: on any
    # error or Ctrl-C before that, the previous outputs stay as they were (never a new OUT beside an old OUT.png)
    with write_errors(out):
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    staged = {stage / "dataset": out, stage / "nifti": nifti_dir, stage / "grid.png": png}
    try:
        try:
            write_dataset(syn, stage / "dataset")
            if nifti:
                export_nifti(syn, stage / "nifti")
            if grid:
                save_grid(syn, stage / "grid.png", seed=seed)
        except DataError as e:  # a full disk: name the output, not the hidden folder it was built in
            msg = str(e)
            for tmp, real in staged.items():
                msg = msg.replace(str(tmp), str(real))
            raise DataError(msg) from e
        with write_errors(out):
            replace_dir(stage / "dataset", out, kind="dataset")
            if nifti:
                replace_dir(stage / "nifti", nifti_dir, kind="nifti")
            if grid:
                os.replace(stage / "grid.png", png)
                _register(png)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return syn


def _check_mask_size(ref: Dataset, masks, gen, model) -> None:
    """``--masks`` must hold slices of the model's training size (a data error, exit 4, naming both folders)."""
    want = trained_size(gen)
    if want is not None and tuple(ref.shape) != want:
        raise DataError(
            f"--masks {masks}: slices are {ref.shape[0]}×{ref.shape[1]} but the model {model} was trained at "
            f"{want[0]}×{want[1]}; give a dataset of that size"
        )
