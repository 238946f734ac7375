"""``cmraudit audit`` as a function: the privacy audit of a synthetic set against prepared train / holdout sets.

One call of :func:`cmraudit.privacy.audit.audit_privacy`; writes OUT/report.json through the one report
builder (:func:`cmraudit.reporting.build_report`: the privacy section filled, fidelity and utility skipped) and
OUT/privacy/ (per-slice tables, top-k pair images with real slices: keep OUT local).
"""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .device import select_device
from .errors import DataError, PluginError, UsageError
from .generators.checkpoint import load_generator
from .generators.registry import get_plugin
from .estimates import skipped
from .io_guard import atomic_dir, check_output
from .privacy import AuditConfig, ShadowConfig, audit_privacy
from .report.io import write_report
from .reporting import build_report, external_section, generator_section, now_utc
from .results import RunResult
from .registry import FEATURE_SPACES
from .validate import read_input_dataset, require_square, trained_size

#: feature spaces ``cmraudit audit --feature`` accepts (the registered copy search always runs)
UNKNOWN_GENERATOR = "unknown (synthetic set only)"


@dataclass
class AuditRunConfig:
    """Everything ``cmraudit audit`` needs (paths of prepared datasets; docs/cli.md § audit).

    ``model``: RUN_DIR or RUN_DIR/model of the fitted generator (white-box and shadow attacks);
    ``attacks``: MIAs to run (None: the default set); ``shadow``: K shadow generators for LiRA (0: off)."""

    train: str
    holdout: str
    synthetic: str
    out: str
    model: str | None = None
    features: tuple[str, ...] = ("pixel", "domain")
    encoder: str | None = None
    alpha: float = 1e-3
    pixel_views: str = "none"
    shadow: int = 0
    shadow_score: str = "loss"
    executor: str = "local"
    reference: str | None = None
    attacks: tuple[str, ...] | None = None
    resamples: int = 1000
    seed: int = 0
    progress: bool = True
    extra: dict = field(default_factory=dict)  # further AuditConfig fields

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def load_model(path: str | Path):
    """The generator saved in RUN_DIR/model (or the model folder itself)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"--model {path}: no such folder (a fitted model: RUN_DIR, RUN_DIR/model or fit's --out)")
    model_dir = path / "model" if (path / "model" / "config.json").is_file() else path
    return load_generator(model_dir)


def _check_options(cfg: AuditRunConfig) -> None:
    """Option checks done before anything is read (exit 2 naming the option)."""
    known = FEATURE_SPACES.names()
    bad = [f for f in cfg.features if f not in known]
    if bad or not cfg.features:
        raise UsageError(f"--feature {','.join(cfg.features)!r}: unknown space(s) {bad or list(cfg.features)}; "
                         f"expected a comma-separated subset of {sorted(known)}")
    if cfg.pixel_views not in ("none", "flips"):
        raise UsageError(f"--pixel-views {cfg.pixel_views!r}: expected none or flips")
    if cfg.shadow == 1:
        raise UsageError("--shadow 1: the shadow-model attacks need at least 2 shadow models (0 turns them off)")
    if cfg.reference is not None and not cfg.shadow:
        raise UsageError("--reference: reference patients serve only the shadow-model attacks (offline LiRA); add "
                         "--shadow K, or drop --reference")


def _privacy_config(cfg: AuditRunConfig, masks: bool):
    extra: dict[str, Any] = dict(cfg.extra)
    if cfg.attacks is not None:
        if not cfg.attacks:
            raise UsageError("--attacks: give at least one attack name, e.g. --attacks loss,pia,secmi")
        extra["attacks"] = tuple(dict.fromkeys(cfg.attacks))
    domain_params = {"encoder": str(cfg.encoder)} if cfg.encoder is not None else {}
    try:
        return AuditConfig(alpha=cfg.alpha, pixel_views=cfg.pixel_views, n_resamples=cfg.resamples,
                           domain_params=domain_params, masks=masks, **extra)
    except UsageError as e:
        named = cfg.attacks is not None and "unknown attacks" in str(e)
        raise UsageError(f"--attacks {','.join(cfg.attacks)!r}: {e}" if named else str(e)) from e


def _check_reference(ref, ds: dict, cfg: AuditRunConfig) -> None:
    """``--reference``: slices of the audit's size, from patients in neither train nor holdout (exit 4 naming it);
    shadows trained on members would make offline LiRA compare members with themselves."""
    if tuple(ref.shape) != tuple(ds["train"].shape):
        raise DataError(f"--reference {cfg.reference}: slices are {ref.shape[0]}×{ref.shape[1]}, --train "
                        f"{cfg.train} holds {ds['train'].shape[0]}×{ds['train'].shape[1]}; give sets of one size")
    pids = set(ref.patient_id.astype(str))
    for name in ("train", "holdout"):
        shared = sorted(pids & set(ds[name].patient_id.astype(str)))
        if shared:
            raise DataError(f"--reference {cfg.reference}: {len(shared)} patient(s) are also in --{name} "
                            f"{getattr(cfg, name)} (e.g. {', '.join(shared[:3])}); reference patients must be in "
                            "neither train nor holdout (e.g. RUN/data/test)")


def _check_model_size(gen, train, cfg: AuditRunConfig) -> None:
    """``--model`` must have been trained at the audit's image size: white-box attacks on slices of another size
    score a model that never saw such slices (exit 4 naming both)."""
    want = trained_size(gen)
    if want is not None and tuple(train.shape) != want:
        raise DataError(f"--model {cfg.model}: trained at {want[0]}×{want[1]}, but --train {cfg.train} holds "
                        f"{train.shape[0]}×{train.shape[1]} slices; audit with the sets the model was trained on")


def _generator(gen) -> tuple[Any, dict]:
    """The generator section and the plugins entry of a loaded model (or of no model)."""
    if gen is None:
        return external_section(UNKNOWN_GENERATOR), {}
    try:
        info = get_plugin(gen.name)
    except PluginError:
        info = None
    return generator_section(gen, info), ({} if info is None else {info.name: info.to_dict()})


def audit(config: AuditRunConfig) -> RunResult:
    """Audit ``config.synthetic`` for copies, memorisation and membership inference; returns the report.

    OUT is built in a temporary sibling that replaces it at the end: on any failure or Ctrl-C nothing new is left
    (a previous OUT stays as it was)."""
    with contextlib.ExitStack() as stack:
        return _audit(config, stack)


def _audit(config: AuditRunConfig, stack: contextlib.ExitStack) -> RunResult:
    started, timings, t = now_utc(), {}, time.perf_counter()
    out = Path(config.out)
    _check_options(config)
    names = ("train", "holdout", "synthetic", "model", "reference", "encoder")
    check_output(out, inputs=[(f"--{k}", getattr(config, k)) for k in names], option="--out", produces="audit")
    named = (("train", config.train), ("holdout", config.holdout), ("synthetic", config.synthetic))
    ds = {n: read_input_dataset(p, option=f"--{n}") for n, p in named}
    require_square(ds["train"], path=config.train)
    masks = all(d.meta.get("has_masks", True) for d in ds.values())  # image-only sets: no mask-copy search
    pcfg = _privacy_config(config, masks)
    ref = read_input_dataset(config.reference, option="--reference") if config.reference is not None else None
    if ref is not None:
        _check_reference(ref, ds, config)
    gen = load_model(config.model) if config.model is not None else None
    if gen is not None:
        _check_model_size(gen, ds["train"], config)
    shadow_cfg = ShadowConfig(k=config.shadow, executor=config.executor, workdir=str(out / "privacy" / "shadows"),
                              score_attack=config.shadow_score) if config.shadow else None
    timings["data"] = time.perf_counter() - t
    # built beside OUT, swapped in whole when the ExitStack closes, removed on any failure: never half-written
    build = stack.enter_context(atomic_dir(out.resolve(), kind="audit", map_errors=False))
    if shadow_cfg is not None:
        shadow_cfg = dataclasses.replace(shadow_cfg, workdir=str(build / "privacy" / "shadows"))
        if (out / "privacy" / "shadows").is_dir():  # finished shadows of the previous audit are reused (a copy)
            shutil.copytree(out / "privacy" / "shadows", shadow_cfg.workdir, symlinks=True)
    t = time.perf_counter()
    res = audit_privacy(train=ds["train"], holdout=ds["holdout"], synthetic=ds["synthetic"], generator=gen,
                        features=tuple(config.features), seed=config.seed, config=pcfg, out_dir=build,
                        progress=config.progress, shadow=shadow_cfg, reference=ref)
    timings["privacy"] = time.perf_counter() - t
    privacy = res.to_dict()
    if privacy.get("artefacts"):
        privacy["artefacts"] = str(out / "privacy")  # where they are once OUT is swapped in
    report = _report(config, privacy, ds, gen=gen, pcfg=pcfg, started=started, timings=timings)
    write_report(build, report.to_dict())
    return RunResult(run_dir=out, report=report, timings=timings, stage_status=report.stage_status)


def _report(config: AuditRunConfig, privacy: dict, ds: dict, *, gen, pcfg, started: str, timings: dict):
    gsec, plugins = _generator(gen)
    # the features run on the CPU; white-box attacks on the generator's own device
    try:
        device = str(select_device(getattr(gen, "device", "cpu") or "cpu")) if gen is not None else "cpu"
    except UsageError:  # a model saved for a device this machine lacks: the attacks fall back to the CPU
        device = "cpu"
    sources = ", ".join(f"--{k} {getattr(config, k)}" for k in ("train", "holdout", "synthetic"))
    return build_report(command="cmraudit audit", config={"command": "audit", "privacy": pcfg.to_dict()},
                        seed=int(config.seed), seeds={"audit": int(config.seed)}, device=device,
                        source=f"prepared datasets {sources}", parts=ds, timings=timings, started=started,
                        generator=gsec, plugins=plugins,
                        sections={"privacy": privacy,
                                  "fidelity": skipped("not part of cmraudit audit (run cmraudit run for fidelity)"),
                                  "utility": skipped("not part of cmraudit audit (run cmraudit run for utility)")})
