"""The one orchestrator: data → split → fit → sample → audit stages → report (docs/design.md § 3, § 9).

``run(RunConfig(...))`` writes the run directory of the shared contract::

    RUN/report.json  RUN/report.html  RUN/split.json  RUN/data/{train,holdout,test}/
    RUN/synthetic/  RUN/synthetic_paired/  RUN/synthetic_nifti/  RUN/samples.png  RUN/model/
    RUN/work      (resumable training state of the mask and image models)
    RUN/logs/<stage>.csv  (per-step loss, lr, grad norm, ε under DP, img/s: generators/train_log.py)

Audit stages (fidelity, utility, privacy) are entries of :data:`STAGES`: functions
``(ctx: StageContext) -> dict`` whose result becomes the report section of that name.
A stage that is not available reports ``{"status": "skipped", "reason": ...}``.
"""
from __future__ import annotations

import inspect
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .data.dataset import Dataset, write_dataset
from .data.splits import split_patients
from .errors import CmrAuditError, DataError, PluginError, UsageError
from .estimates import skipped
from .generators.registry import call_plugin, get_plugin
from .generators.train_log import LOGS_DIR, log_to
from .io_guard import atomic_file, check_output, make_output_dir, remove_stale_temps
from .progress import set_stage
from .validate import check_run_config, check_seed, check_split_sizes, read_input_dataset  # noqa: F401 - re-exported
from .generators.distributed import is_main_process

SCHEMA_VERSION = "1.0"
PRESETS = ("micro", "quick", "paper")  # micro: the smoke test (docs/generators.md)
#: per preset: phantom subjects, synthetic slices, paired slices (None = all test slices)
PRESET_RUN = {"quick": {"subjects": 60, "n_samples": 96, "n_paired": 32}, "paper": {"subjects": 60, "n_samples": None, "n_paired": None},
              "micro": {"subjects": 9, "n_samples": 8, "n_paired": 4}}


@dataclass
class RunConfig:
    """Everything ``cmraudit run`` needs. ``data=None`` builds the embedded phantom.

    ``n_samples`` synthetic slices (default per preset; ``None`` in paper = as many as train);
    ``n_paired`` real test masks re-rendered for paired fidelity; ``params`` override the preset.
    """

    generator: str = "ddpm"
    data: str | None = None
    preset: str = "quick"
    out: str | None = None
    seed: int = 0
    n_samples: int | None = None
    n_paired: int | None = None
    device: str = "auto"
    dp_epsilon: float | None = None  # patient-level DP-SGD budget for the whole generator (None or inf: no DP)
    dp_delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    noise_multiplicity: int = 1
    dp_split: str | None = None  # stage weights of the joint DP budget, e.g. "mask=0.3,image=0.7" (None: equal)
    params: dict = field(default_factory=dict)
    overwrite: bool = False
    resume: bool = False
    progress: bool = True
    phantom_subjects: int | None = None

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class StageContext:
    run_dir: Path
    train: Dataset
    holdout: Dataset
    test: Dataset
    synthetic: Dataset
    synthetic_paired: Dataset | None
    generator: Any
    seed: int
    device: str
    progress: bool
    config: RunConfig
    shared: dict = field(default_factory=dict)  # objects stages share (fitted feature extractors)


@dataclass
class RunResult:
    """The run directory, its report (dict) and wall time per step in seconds."""

    run_dir: Path
    report: dict
    timings: dict[str, float]
    stage_status: dict[str, str]

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "timings": self.timings, "stages": self.stage_status}


# ------------------------------------------------------------------ stages
def _audit_features(ctx: StageContext) -> tuple:
    """Fit the pixel and domain feature spaces once per run (the domain encoder on train ∪ holdout only)."""
    if "features" not in ctx.shared:
        from .features import fit_features

        pool = np.concatenate([np.asarray(ctx.train.images), np.asarray(ctx.holdout.images)])
        ctx.shared["features"] = (fit_features("pixel", seed=ctx.seed), fit_features("domain", pool=pool, seed=ctx.seed, progress=ctx.progress))
    return ctx.shared["features"]


def _stage_privacy(ctx: StageContext) -> dict:
    from .privacy.audit import audit_privacy

    res = audit_privacy(train=ctx.train, holdout=ctx.holdout, synthetic=ctx.synthetic, generator=ctx.generator,
                        features=_audit_features(ctx), seed=ctx.seed, out_dir=ctx.run_dir, progress=ctx.progress,
                        reference=ctx.test)
    return res.to_dict()


def _stage_fidelity(ctx: StageContext) -> dict:
    from .fidelity.evaluate import evaluate_fidelity

    pool = Dataset.concat([ctx.train, ctx.holdout])
    domain = _audit_features(ctx)[1]  # paired rows follow synthetic_paired.meta["test_rows"]
    return evaluate_fidelity(real=ctx.test, synthetic=ctx.synthetic, paired=ctx.synthetic_paired, pool=pool, seed=ctx.seed,
                             extractors={"domain": domain}, progress=ctx.progress).to_dict()


def _stage_utility(ctx: StageContext) -> dict:
    from .utility.evaluate import utility_stage

    return utility_stage(ctx)


#: privacy first: it fits the domain encoder that fidelity reuses
STAGES: list[tuple[str, Callable[[StageContext], dict]]] = [
    ("privacy", _stage_privacy), ("fidelity", _stage_fidelity), ("utility", _stage_utility),
]


# ------------------------------------------------------------------ helpers
def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_generator(name: str, *, preset: str, params: dict | None = None, device: str = "auto", image_size: int | None = None):
    """Instantiate a registered generator from a preset plus overrides (plain ``cls(**params)`` without presets)."""
    cls = get_plugin(name).cls
    params = dict(params or {})
    if hasattr(cls, "from_preset"):
        if image_size is not None and "image_size" not in params:
            params["image_size"] = image_size
        params.setdefault("device", device)
        return call_plugin(name, "its constructor", cls.from_preset, preset, **params)
    try:
        return cls(**params)
    except TypeError as e:
        raise UsageError(f"generator {name!r} rejected its parameters {sorted(params)}: {e}") from e
    except (CmrAuditError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - a plugin's constructor bug is a plugin error (exit 3)
        raise PluginError(f"generator {name!r} failed in its constructor: {type(e).__name__}: {e}") from e


def load_data(data: str | os.PathLike | None, *, preset: str, seed: int, subjects: int | None = None, progress: bool = False) -> tuple[Dataset, str]:
    """The prepared dataset at ``data``, or the embedded phantom at the preset's image size."""
    if data is not None:
        return read_input_dataset(data, option="--data"), str(data)
    from .data.phantom import PhantomConfig, make_phantom
    from .generators.presets import resolve_preset

    size = int(resolve_preset(preset)["image_size"]) if preset != "paper" else 128
    n = subjects or PRESET_RUN.get(preset, PRESET_RUN["quick"])["subjects"]
    return make_phantom(PhantomConfig(subjects=n, size=size), seed=seed, progress=progress), f"phantom(subjects={n}, size={size}, seed={seed})"


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
    from .data.montage import save_montage

    return save_montage(ds, path, n=min(n, len(ds)), seed=seed, overlay="contour", title="synthetic samples (mask contours)")


def _synthetic_for_spacing(syn: Dataset, ref: Dataset) -> Dataset:
    sp = ref.spacing_mm[np.isfinite(ref.spacing_mm).all(1)]
    if len(sp):
        syn.spacing_mm = np.tile(np.median(sp, axis=0), (len(syn), 1))
    return syn


def _write_report(run_dir: Path, report: dict) -> Path:
    from .report import write_report

    return write_report(run_dir, report)


# ------------------------------------------------------------------ run
def run(config: RunConfig) -> RunResult:
    """Run the whole pipeline; returns the run directory and its report."""
    check_run_config(config)
    from .privacy.dp import DPConfig, require_dp_support

    dp = DPConfig.from_options(config.dp_epsilon, delta=config.dp_delta, max_grad_norm=config.max_grad_norm,
                               accountant=config.accountant, noise_multiplicity=config.noise_multiplicity,
                               split=config.dp_split)
    if dp is not None:
        require_dp_support(name=config.generator, tags=get_plugin(config.generator).cls.tags, dp=dp)
    from .device import select_device

    device = select_device(config.device)
    started, timings, t = _now(), {}, time.perf_counter()
    run_dir = Path(config.out or f"cmraudit-runs/{config.generator}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    check_output(run_dir, inputs=[("--data", config.data)], option="--out", produces="run")
    if (run_dir / "report.json").exists() and not (config.overwrite or config.resume):
        raise UsageError(f"--out {run_dir}: a finished run is already there; pass --overwrite or choose another --out")
    info = get_plugin(config.generator)

    set_stage("data")
    ds, source = load_data(config.data, preset=config.preset, seed=config.seed, subjects=config.phantom_subjects, progress=config.progress)
    require_masks(ds, source)
    try:
        split = split_patients(ds, seed=config.seed)
    except CmrAuditError as e:
        raise type(e)(f"{source}: {e}") from e
    parts = split.apply(ds)
    check_split_sizes(parts, source)
    # the generator is built and its parameters checked before anything is written
    gen = make_generator(config.generator, preset=config.preset, params=config.params, device=config.device,
                         image_size=int(parts["train"].shape[0]) if config.data is not None else None)
    if hasattr(gen, "validate_params"):
        call_plugin(config.generator, "validate_params", gen.validate_params)
    make_output_dir(run_dir, kind="run")
    if config.resume:
        remove_stale_temps(run_dir)  # what a killed run (kill -9) could not clean up
    split.save(run_dir / "split.json")
    for name, part in parts.items():
        write_dataset(part, run_dir / "data" / name, overwrite=True)
    train, holdout, test = parts["train"], parts["holdout"], parts["test"]
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    set_stage("fit")
    fit_kw: dict = {"work_dir": run_dir / "work", "resume": config.resume} if hasattr(gen, "from_preset") else {}
    if getattr(getattr(gen, "tags", None), "needs_reference_data", False):
        fit_kw["reference"] = test  # replay generators draw novel slices from test patients, never the audit's holdout
    with log_to(run_dir / LOGS_DIR):  # every train_loop writes RUN/logs/<stage>.csv
        call_plugin(config.generator, "fit", gen.fit, train, seed=config.seed, progress=config.progress, **fit_kw,
                    **({} if dp is None else {"dp": dp}))
    call_plugin(config.generator, "save", gen.save, run_dir / "model")
    timings["fit"] = time.perf_counter() - t

    t = time.perf_counter()
    set_stage("sample")
    defaults = PRESET_RUN.get(config.preset, PRESET_RUN["quick"])
    n_samples = int(config.n_samples if config.n_samples is not None else (defaults["n_samples"] or len(train)))
    pkw = {"progress": config.progress} if "progress" in inspect.signature(gen.sample).parameters else {}
    drawn = call_plugin(config.generator, "sample", gen.sample, n=n_samples, seed=config.seed + 1, **pkw)
    synthetic = _synthetic_for_spacing(drawn, train)
    write_dataset(synthetic, run_dir / "synthetic", overwrite=True)
    paired = None
    tags = getattr(gen, "tags", None)
    n_paired = config.n_paired if config.n_paired is not None else (defaults["n_paired"] or len(test))
    if (tags is None or tags.conditional) and n_paired > 0:
        k = min(len(test), int(n_paired))
        rows = np.arange(len(test)) if k == len(test) else np.sort(np.random.default_rng(config.seed + 2).choice(len(test), k, replace=False))
        drawn = call_plugin(config.generator, "sample", gen.sample, masks=np.asarray(test.masks[rows]),
                            seed=config.seed + 2, **pkw)
        paired = _synthetic_for_spacing(drawn, test)
        paired.meta.update({"paired_with": "test", "test_rows": rows.tolist()})
        write_dataset(paired, run_dir / "synthetic_paired", overwrite=True)
    export_nifti(synthetic, run_dir / "synthetic_nifti")
    save_grid(synthetic, run_dir / "samples.png", seed=config.seed)
    timings["sample"] = time.perf_counter() - t

    ctx = StageContext(run_dir=run_dir, train=train, holdout=holdout, test=test, synthetic=synthetic, synthetic_paired=paired,
                       generator=gen, seed=config.seed, device=str(device), progress=config.progress, config=config)
    sections, status = {}, {}
    for name, fn in STAGES:
        t = time.perf_counter()
        set_stage(name)
        try:
            sections[name] = fn(ctx)
        except CmrAuditError as e:
            sections[name] = skipped(f"{type(e).__name__}: {e}")
        timings[name] = time.perf_counter() - t
        status[name] = "skipped" if sections[name].get("status") == "skipped" else "done"

    set_stage("report")
    report = build_report(config=config, gen=gen, info=info, device=str(device), source=source, split=split,
                          parts={**parts, "synthetic": synthetic}, paired=paired, sections=sections, started=started, timings=timings)
    if is_main_process():
        _write_report(run_dir, report)
        from .report.card import write_card
        from .report.html import render_html

        write_card(run_dir)  # RUN/card.md, linked from report.html

        render_html(run_dir)
    return RunResult(run_dir=run_dir, report=report, timings=timings, stage_status={"fit": "done", "sample": "done", **status})


def build_report(*, config, gen, info, device: str, source: str, split, parts: dict, paired, sections: dict,
                 started: str, timings: dict, command: str = "cmraudit run", seeds: dict | None = None,
                 generator_section: dict | None = None) -> dict:
    """Assemble report.json (schema 1.0): run, data, generator, stages, verdicts.

    ``cmraudit evaluate`` passes ``gen=None, info=None`` and its own ``generator_section`` (an external set)."""
    import torch

    from . import __version__

    fps = {k: v.fingerprint() for k, v in parts.items()}
    seeds = seeds or {"split": config.seed, "fit": config.seed, "sample": config.seed + 1, "paired": config.seed + 2}
    from .report.provenance import build_run_section

    run_sec = build_run_section(seed=config.seed, config=config.to_dict(), device=device, data_fingerprints=fps,
                                plugins={} if info is None else {info.name: info.to_dict()}, command=command)
    import monai

    run_sec.setdefault("versions", {}).update({"cmraudit": __version__, "torch": torch.__version__, "monai": monai.__version__,
                                               "python": platform.python_version()})
    run_sec.update({"seeds": seeds, "started_utc": started, "finished_utc": _now(), "timings_s": {k: round(v, 2) for k, v in timings.items()}})
    counts = {k: {"patients": int(len(v.patients)), "slices": int(len(v))} for k, v in parts.items()}
    data = {"source": source, **counts, "synthetic_paired": None if paired is None else {"slices": int(len(paired))}}
    training = getattr(gen, "training_", {}) or {}
    if gen is None:
        return _finish_report(config, run_sec, data, generator_section, sections)
    gsec = {"name": info.name, "params": gen.get_params() if hasattr(gen, "get_params") else {},
            "distribution": info.distribution, "version": info.version, "entry_point": info.value,
            "tags": gen.tags.to_dict() if hasattr(getattr(gen, "tags", None), "to_dict") else None,
            "training_time_s": round(float(getattr(gen, "training_time_s_", timings.get("fit", 0.0))), 2),
            "training": {k: ({kk: vv for kk, vv in v.items() if kk != "losses"} if isinstance(v, dict) else v) for k, v in training.items()},
            "dp": getattr(gen, "dp_", None)}
    return _finish_report(config, run_sec, data, gsec, sections)


def _finish_report(config, run_sec: dict, data: dict, gsec: dict, sections: dict) -> dict:
    from .report.gate import compute_verdicts

    report = {"schema_version": SCHEMA_VERSION, "run": run_sec, "data": data, "generator": gsec, **sections, "verdicts": {}}
    report["verdicts"] = compute_verdicts(report)
    return report


# ------------------------------------------------------------------ fit / sample alone (cmraudit/standalone.py)
from .standalone import fit_generator, sample_generator  # noqa: E402,F401 - re-exported
