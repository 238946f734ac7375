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

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from .cpu import refresh_threads
from .data.dataset import Dataset, fingerprint_arrays, write_dataset
from .data.phantom import PhantomConfig, make_phantom
from .data.splits import PatientSplit, split_patients
from .device import select_device
from .dp import DPConfig, require_dp_support
from .dp.budget import stage_weights
from .errors import CmrAuditError, UsageError
from .estimates import is_skipped, skipped
from .generators.distributed import is_main_process
from .generators.presets import PRESET_NAMES as PRESETS  # noqa: F401 - re-exported (validate.py)
from .generators.presets import resolve_preset
from .generators.registry import call_plugin, get_plugin
from .generators.train_log import LOGS_DIR, log_to
from .io_guard import MARKER, atomic_dir, check_output, make_output_dir, record_entries, remove_stale_temps
from .progress import set_stage
from .report import write_report
from .report.card import write_card
from .report.html import render_html
from .report.schema import SCHEMA_VERSION  # noqa: F401 - re-exported
from .reporting import build_report as _build_report
from .reporting import generator_section, now_utc
from .results import Report, RunResult  # noqa: F401 - RunResult re-exported
from .run_parts import (  # noqa: F401 - re-exported
    _synthetic_for_spacing, export_nifti, labelled_as, make_generator, plugin_class, require_masks, save_grid,
)
from .stages import STAGES, StageContext, _audit_features, dp_audit_stage  # noqa: F401 - re-exported
from .validate import check_run_config, check_seed, check_split_sizes, read_input_dataset  # noqa: F401 - re-exported

#: per preset: phantom subjects, synthetic slices, paired slices (None = all test slices)
PRESET_RUN = {
    "quick": {"subjects": 60, "n_samples": 96, "n_paired": 32},
    "paper": {"subjects": 60, "n_samples": None, "n_paired": None},
    "micro": {"subjects": 9, "n_samples": 8, "n_paired": 4},
}


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
    dp_audit_canaries: int = 0  # > 0: also train once with this many canary patients and report ε̂ (dp_audit block)

    def to_dict(self) -> dict:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        if not d["dp_audit_canaries"]:
            del d["dp_audit_canaries"]  # absent when off: reports of runs without the audit keep their content
        return d


# ------------------------------------------------------------------ helpers
_now = now_utc


def load_data(
    data: str | os.PathLike | None, *, preset: str, seed: int, subjects: int | None = None, progress: bool = False
) -> tuple[Dataset, str]:
    """The prepared dataset at ``data``, or the embedded phantom at the preset's image size."""
    if data is not None:
        return read_input_dataset(data, option="--data"), str(data)

    size = int(resolve_preset(preset)["image_size"]) if preset != "paper" else 128
    n = subjects or PRESET_RUN.get(preset, PRESET_RUN["quick"])["subjects"]
    return make_phantom(
        PhantomConfig(subjects=n, size=size), seed=seed, progress=progress
    ), f"phantom(subjects={n}, size={size}, seed={seed})"


def _write_report(run_dir: Path, report: dict) -> Path:
    return write_report(run_dir, report)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None  # unreadable: rewritten, as before


def _check_resume(run_dir: Path, split: PatientSplit, parts: dict) -> None:
    """``--resume``: refuse, before anything is written, a run whose split or data differ from those already in
    ``run_dir`` (another --seed, --data or preset), instead of rewriting them and failing at the training state."""
    path, old = run_dir / "split.json", _read_json(run_dir / "split.json")
    if isinstance(old, dict) and old.get("seed") != split.seed:
        raise UsageError(f"--resume: {path} was written with --seed {old.get('seed')}, this run has --seed "
                         f"{split.seed}; resume with the same settings, or choose another --out")
    if isinstance(old, dict) and old != split.to_dict():
        raise UsageError(f"--resume: {path} splits other patients than this run's data; resume with the same --data, "
                         "or choose another --out")
    for name, part in parts.items():
        meta = _read_json(run_dir / "data" / name / "dataset.json")
        have = meta.get("fingerprint") if isinstance(meta, dict) else None
        if have is not None and have != fingerprint_arrays(np.ascontiguousarray(part.images, dtype=np.float32),
                                                           np.ascontiguousarray(part.masks, dtype=np.uint8)):
            raise UsageError(f"--resume: {run_dir / 'data' / name} holds other slices than this run's {name} split "
                             "(another --data or --preset?); resume with the same settings, or choose another --out")


# ------------------------------------------------------------------ run
def run(config: RunConfig) -> RunResult:
    """Run the whole pipeline; returns the run directory and its report.

    A new run (or ``--resume``) writes into ``--out`` as it goes, so that an interrupted run can be resumed; any
    other run over an existing one (``--overwrite``) is built in a temporary sibling that replaces it whole at the
    end: interrupted or failed, the previous run stays as it was."""
    with contextlib.ExitStack() as stack:
        return _run(config, stack)


def dp_options(config: RunConfig) -> DPConfig | None:
    """The run's DP config from its options (None without ``--dp-epsilon``), refused (exit 2) before anything is
    trained or written where the generator cannot train under it: no DP support, or a ``--dp-split`` that does not
    name exactly its ``dp_stages``."""
    dp = DPConfig.from_options(config.dp_epsilon, delta=config.dp_delta, max_grad_norm=config.max_grad_norm,
                               accountant=config.accountant, noise_multiplicity=config.noise_multiplicity,
                               split=config.dp_split)
    if dp is not None:
        cls = get_plugin(config.generator).cls
        require_dp_support(name=config.generator, tags=cls.tags, dp=dp)
        if getattr(cls, "dp_stages", None):
            stage_weights(dp.split_weights, list(cls.dp_stages))
    return dp


def _run(config: RunConfig, stack: contextlib.ExitStack) -> RunResult:
    check_run_config(config)

    dp = dp_options(config)
    device = select_device(config.device)
    started, timings, t = _now(), {}, time.perf_counter()
    run_dir = Path(config.out or f"cmraudit-runs/{config.generator}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    check_output(run_dir, inputs=[("--data", config.data)], option="--out", produces="run")
    if (run_dir / "report.json").exists() and not (config.overwrite or config.resume):
        raise UsageError(f"--out {run_dir}: a finished run is already there; pass --overwrite or choose another --out")
    info = get_plugin(config.generator)

    set_stage("data")
    ds, source = load_data(
        config.data, preset=config.preset, seed=config.seed, subjects=config.phantom_subjects, progress=config.progress
    )
    require_masks(ds, source)
    n_pat = len(set(ds.patient_id))
    if config.dp_audit_canaries and not 2 <= config.dp_audit_canaries <= n_pat - 2:
        raise UsageError(f"--dp-audit-canaries {config.dp_audit_canaries}: need 2 ≤ canaries ≤ {n_pat - 2} "
                         f"({source} has {n_pat} patients; at least 2 must stay non-canary)")
    try:
        split = split_patients(ds, seed=config.seed)
    except CmrAuditError as e:
        raise type(e)(f"{source}: {e}") from e
    parts = split.apply(ds)
    check_split_sizes(parts, source)
    # the generator is built and its parameters checked before anything is written
    gen_size = int(parts["train"].shape[0]) if config.data is not None else None
    gen = make_generator(config.generator, preset=config.preset, params=config.params, device=config.device,
                         image_size=gen_size)
    call_plugin(config.generator, "validate_params", gen.validate_params)
    if config.resume:
        _check_resume(run_dir, split, parts)
    replace = not config.resume and run_dir.is_dir() and any(p.name != MARKER for p in run_dir.iterdir())
    if replace:  # build beside the old run; swapped in when the ExitStack closes, removed on any failure
        build = stack.enter_context(atomic_dir(run_dir.resolve(), kind="run", map_errors=False))
    else:
        build = make_output_dir(run_dir, kind="run")
    if config.resume:
        remove_stale_temps(run_dir)  # what a killed run (kill -9) could not clean up
    split.save(build / "split.json")
    for name, part in parts.items():
        write_dataset(part, build / "data" / name, overwrite=True)
    train, holdout, test = parts["train"], parts["holdout"], parts["test"]
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    set_stage("fit")
    refresh_threads()  # automatic threads follow the load stage by stage (cmraudit.cpu)
    fit_kw: dict = {"work_dir": build / "work", "resume": config.resume}
    if gen.tags.needs_reference_data:
        fit_kw["reference"] = test  # replay generators draw novel slices from test patients, never the audit's holdout
    with log_to(build / LOGS_DIR):  # every train_loop writes RUN/logs/<stage>.csv
        call_plugin(config.generator, "fit", gen.fit, train, seed=config.seed, progress=config.progress, **fit_kw,
                    **({} if dp is None else {"dp": dp}))
    call_plugin(config.generator, "save", gen.save, build / "model")
    timings["fit"] = time.perf_counter() - t

    t = time.perf_counter()
    set_stage("sample")
    refresh_threads()
    defaults = PRESET_RUN.get(config.preset, PRESET_RUN["quick"])
    n_samples = int(config.n_samples if config.n_samples is not None else (defaults["n_samples"] or len(train)))
    pkw = {"progress": config.progress}
    drawn = call_plugin(config.generator, "sample", gen.sample, n=n_samples, seed=config.seed + 1, **pkw)
    synthetic = _synthetic_for_spacing(drawn, train)
    write_dataset(synthetic, build / "synthetic", overwrite=True)
    paired = None
    n_paired = config.n_paired if config.n_paired is not None else (defaults["n_paired"] or len(test))
    if gen.tags.conditional and n_paired > 0:
        k = min(len(test), int(n_paired))
        rows = (
            np.arange(len(test))
            if k == len(test)
            else np.sort(np.random.default_rng(config.seed + 2).choice(len(test), k, replace=False))
        )
        drawn = call_plugin(config.generator, "sample", gen.sample, masks=np.asarray(test.masks[rows]),
                            seed=config.seed + 2, **pkw)
        paired = labelled_as(_synthetic_for_spacing(drawn, test), test, rows)
        paired.meta.update({"paired_with": "test", "test_rows": rows.tolist()})
        write_dataset(paired, build / "synthetic_paired", overwrite=True)
    export_nifti(synthetic, build / "synthetic_nifti")
    save_grid(synthetic, build / "samples.png", seed=config.seed)
    timings["sample"] = time.perf_counter() - t

    ctx = StageContext(
        run_dir=build,
        train=train,
        holdout=holdout,
        test=test,
        synthetic=synthetic,
        synthetic_paired=paired,
        generator=gen,
        seed=config.seed,
        device=str(device),
        progress=config.progress,
        config=config,
    )
    sections, status = {}, {}
    for name, fn in STAGES:
        t = time.perf_counter()
        set_stage(name)
        refresh_threads()
        try:
            sections[name] = fn(ctx)
        except CmrAuditError as e:
            sections[name] = skipped(f"{type(e).__name__}: {e}")
        timings[name] = time.perf_counter() - t
        status[name] = "skipped" if is_skipped(sections[name]) else "done"
    if replace and isinstance(sections.get("privacy"), dict) and sections["privacy"].get("artefacts"):
        sections["privacy"]["artefacts"] = str(run_dir / "privacy")  # where they are once the run is swapped in

    dp_audit = None
    if config.dp_audit_canaries:
        set_stage("dp audit")
        refresh_threads()
        t = time.perf_counter()
        dp_audit = dp_audit_stage(
            data=ds, canaries=config.dp_audit_canaries, dp=dp, seed=config.seed,
            make_generator=lambda: make_generator(config.generator, preset=config.preset, params=config.params,
                                                  device=config.device, image_size=gen_size))
        timings["dp_audit"] = time.perf_counter() - t
    set_stage("report")
    report = build_report(config=config, gen=gen, info=info, device=str(device), source=source,
                          parts={**parts, "synthetic": synthetic}, paired=paired, sections=sections, started=started,
                          timings=timings, dp_audit=dp_audit)
    if is_main_process():
        _write_report(build, report.to_dict())

        write_card(build)  # RUN/card.md, linked from report.html

        render_html(build)
        if not replace:
            record_entries(run_dir, "run")  # --overwrite later replaces these entries only (io_guard)
    return RunResult(
        run_dir=run_dir, report=report, timings=timings, stage_status={"fit": "done", "sample": "done", **status}
    )


def build_report(*, config, gen, info, device: str, source: str, parts: dict, paired, sections: dict,
                 started: str, timings: dict, dp_audit: dict | None = None) -> Report:
    """The report of ``cmraudit run`` through the one builder (:func:`cmraudit.reporting.build_report`)."""
    seeds = {"split": config.seed, "fit": config.seed, "sample": config.seed + 1, "paired": config.seed + 2}
    return _build_report(command="cmraudit run", config=config.to_dict(), seed=config.seed, seeds=seeds, device=device,
                         source=source, parts=parts, paired=paired, sections=sections, started=started,
                         timings=timings, plugins={info.name: info.to_dict()},
                         generator=generator_section(gen, info, fit_time_s=timings.get("fit", 0.0)),
                         dp_audit=dp_audit)


# ------------------------------------------------------------------ fit / sample alone (cmraudit/standalone.py)
from .standalone import fit_generator, sample_generator  # noqa: E402,F401 - re-exported
