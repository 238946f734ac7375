"""``cmraudit evaluate``: ``run`` without fit and sample — all three axes on a synthetic set you already have.

Inputs are prepared datasets (``cmraudit data import …``): ``train`` (the generator's training
patients, members), ``holdout`` (never seen, non-members), the ``synthetic`` set, optionally a
real ``test`` set (fidelity reference and segmentation test patients; without it the holdout
patients play that part and the report says so) and a ``paired`` set (images generated from the
test masks, row i ↔ test slice i). Writes OUT/report.json and OUT/report.html with the builder of
``cmraudit run`` (:func:`cmraudit.reporting.build_report`), so ``gate`` and ``compare`` read it unchanged.

An image-only synthetic set (``has_masks: false`` in dataset.json) is audited for privacy (no
mask-copy search) and fidelity (no radiomic space, no mask plausibility); utility is
``{"status": "skipped", "reason": ...}``: a segmenter cannot be trained without masks.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cpu import refresh_threads
from .data.dataset import Dataset, read_dataset, write_dataset
from .device import select_device
from .errors import CmrAuditError, DataError, UsageError
from .estimates import is_skipped, skipped
from .fidelity.evaluate import evaluate_fidelity
from .io_guard import atomic_dir, check_output
from .pipeline import StageContext, _audit_features, _write_report, save_grid
from .privacy.audit import audit_privacy
from .privacy.config import AuditConfig
from .report.html import render_html
from .reporting import build_report, external_section, now_utc
from .results import RunResult
from .utility.evaluate import PRESETS as UTILITY_PRESETS
from .utility.evaluate import evaluate_utility
from .validate import check_input_dataset, check_seed, require_square

NO_MASKS = "the synthetic set has no masks (image-only import)"


@dataclass
class EvaluateConfig:
    """Everything ``cmraudit evaluate`` needs (paths of prepared datasets; ``name`` labels the set in reports)."""

    train: str
    holdout: str
    synthetic: str
    out: str
    test: str | None = None
    paired: str | None = None
    name: str | None = None
    seed: int = 0
    utility_preset: str = "quick"
    utility_params: dict = field(default_factory=dict)  # segmenter overrides, e.g. {"iterations": 20}
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def _check_options(cfg: EvaluateConfig) -> None:
    """Option checks done before anything is read or written (exit 2 naming the option), as ``run`` does."""
    if cfg.utility_preset not in UTILITY_PRESETS:
        raise UsageError(f"--utility-preset {cfg.utility_preset!r} is not a segmenter preset; expected one of "
                         f"{', '.join(UTILITY_PRESETS)}")
    check_seed(cfg.seed)
    select_device(cfg.device)


def _check_inputs(cfg: EvaluateConfig, sets: dict[str, Dataset]) -> None:
    check_output(
        cfg.out,
        inputs=[(f"--{k}", getattr(cfg, k)) for k in ("train", "holdout", "synthetic", "test", "paired")],
        option="--out",
        produces="run",
    )
    if (Path(cfg.out) / "report.json").exists() and not cfg.overwrite:
        raise UsageError(f"--out {cfg.out}: a report is already there; pass --overwrite or choose another --out")
    real = {k: v for k, v in sets.items() if k in ("train", "holdout", "test") and v is not None}
    names = list(real)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = set(real[a].patient_id.astype(str)) & set(real[b].patient_id.astype(str))
            if shared:
                raise DataError(
                    f"--{a} {getattr(cfg, a)} and --{b} {getattr(cfg, b)} share {len(shared)} patient(s) "
                    f"(e.g. {sorted(shared)[0]}); membership is per patient: the sets must be disjoint"
                )
    for k, ds in sets.items():  # the prepared format promises finite values in [-1, 1]; nothing else is audited
        if ds is not None:
            check_input_dataset(ds, path=getattr(cfg, k), option=f"--{k}")
    require_square(sets["train"], path=cfg.train)
    shape = sets["train"].shape
    for k, ds in sets.items():
        if ds is not None and ds.shape != shape:
            raise DataError(
                f"--{k} {getattr(cfg, k)}: slices are {ds.shape[0]}×{ds.shape[1]} but --train slices "
                f"{shape[0]}×{shape[1]}; re-import at one size (cmraudit data import images … --size)"
            )
    if sets.get("paired") is not None:
        if sets.get("test") is None:
            raise UsageError(
                "--paired needs --test (the real slices whose masks the paired images were generated from)"
            )
        if len(sets["paired"]) != len(sets["test"]) and "test_rows" not in sets["paired"].meta:
            raise DataError(
                f"--paired {cfg.paired}: {len(sets['paired'])} slices but --test has {len(sets['test'])}; "
                "row i must be generated from test slice i"
            )


def _masked(ds: Dataset) -> bool:
    """False for an image-only set (``has_masks: false`` in dataset.json, written by ``data import images``)."""
    return bool(ds.meta.get("has_masks", True))


def _privacy(ctx: StageContext, *, has_masks: bool, reference: Dataset | None, why: str) -> dict:
    res = audit_privacy(
        train=ctx.train,
        holdout=ctx.holdout,
        synthetic=ctx.synthetic,
        generator=None,
        features=_audit_features(ctx),
        seed=ctx.seed,
        config=AuditConfig(masks=has_masks),
        out_dir=ctx.run_dir,
        progress=ctx.progress,
        reference=reference,
    )
    d = res.to_dict()
    if not has_masks:
        d["masks"] = skipped(f"{why}: no mask-copy search")
    return d


def _fidelity(ctx: StageContext, *, has_masks: bool, why: str) -> dict:
    pool = Dataset.concat([ctx.train, ctx.holdout])
    d = evaluate_fidelity(
        real=ctx.test,
        synthetic=ctx.synthetic,
        paired=ctx.synthetic_paired,
        pool=pool,
        seed=ctx.seed,
        extractors={"domain": _audit_features(ctx)[1]},
        progress=ctx.progress,
        masks=has_masks,
    ).to_dict()
    if not has_masks:  # name the set that lacks masks
        d["mask_plausibility"] = d["distribution"]["radiomic"] = skipped(f"{why}: mask-based metrics need them")
    return d


def _utility(ctx: StageContext, *, has_masks: bool, preset: str, params: dict, why: str) -> dict:
    if not has_masks:
        return skipped(f"{why}: a segmenter cannot be trained or scored without masks")

    return evaluate_utility(
        train=ctx.train,
        synthetic=ctx.synthetic,
        test=ctx.test,
        seed=ctx.seed,
        preset=preset,
        progress=ctx.progress,
        **{"device": ctx.device, **params},
    ).to_dict()


def evaluate(config: EvaluateConfig) -> RunResult:
    """Privacy, fidelity and utility of an existing synthetic set; writes OUT/report.json and OUT/report.html.

    OUT is built in a temporary sibling that replaces it at the end: on any failure or Ctrl-C nothing new is left
    (a previous OUT stays as it was)."""
    with contextlib.ExitStack() as stack:
        return _evaluate(config, stack)


def _evaluate(config: EvaluateConfig, stack: contextlib.ExitStack) -> RunResult:
    _check_options(config)
    started, timings, t = now_utc(), {}, time.perf_counter()
    sets = {
        k: (read_dataset(getattr(config, k)) if getattr(config, k) is not None else None)
        for k in ("train", "holdout", "synthetic", "test", "paired")
    }
    _check_inputs(config, sets)
    syn, test = sets["synthetic"], sets["test"]
    has_masks = _masked(syn)
    reference = test if test is not None else sets["holdout"]
    unmasked_real = [k for k in ("train", "holdout", "test") if sets[k] is not None and not _masked(sets[k])]
    why = NO_MASKS
    if has_masks and unmasked_real:
        why = f"the real --{unmasked_real[0]} set has no masks (image-only)"
    masks_ok = {  # which stages may read masks: every set they compare must have them
        "privacy": has_masks and not {"train", "holdout"} & set(unmasked_real),
        "fidelity": has_masks and _masked(reference),
        "utility": has_masks and _masked(sets["train"]) and _masked(reference),
    }
    device = select_device(config.device)

    out = Path(config.out)  # built beside OUT, swapped in whole when the ExitStack closes, removed on any failure
    run_dir = stack.enter_context(atomic_dir(out.resolve(), kind="run", map_errors=False))
    write_dataset(syn, run_dir / "synthetic")
    save_grid(syn, run_dir / "samples.png", seed=config.seed)
    timings["data"] = time.perf_counter() - t
    ctx = StageContext(
        run_dir=run_dir,
        train=sets["train"],
        holdout=sets["holdout"],
        test=reference,
        synthetic=syn,
        synthetic_paired=sets["paired"],
        generator=None,
        seed=config.seed,
        device=str(device),
        progress=config.progress,
        config=config,
    )  # type: ignore[arg-type]
    stages = (
        ("privacy", lambda: _privacy(ctx, has_masks=masks_ok["privacy"], reference=test, why=why)),
        ("fidelity", lambda: _fidelity(ctx, has_masks=masks_ok["fidelity"], why=why)),
        (
            "utility",
            lambda: _utility(
                ctx, has_masks=masks_ok["utility"], preset=config.utility_preset, params=config.utility_params, why=why
            ),
        ),
    )
    sections, status = {}, {}
    for name, fn in stages:
        t = time.perf_counter()
        refresh_threads()  # automatic threads follow the load stage by stage (cmraudit.cpu)
        try:
            sections[name] = fn()
        except CmrAuditError as e:
            sections[name] = skipped(f"{type(e).__name__}: {e}")
        timings[name] = time.perf_counter() - t
        status[name] = "skipped" if is_skipped(sections[name]) else "done"
    if isinstance(sections.get("privacy"), dict) and sections["privacy"].get("artefacts"):
        sections["privacy"]["artefacts"] = str(out / "privacy")  # where they are once OUT is swapped in
    name = config.name or Path(config.synthetic).name
    gsec = external_section(name, external=True, synthetic_path=str(config.synthetic), has_masks=has_masks,
                            sources=sorted({str(s) for s in syn.source})[:10])
    parts = {"train": sets["train"], "holdout": sets["holdout"], "synthetic": syn,
             **({"test": test} if test is not None else {})}
    counts = {"synthetic": {"patients": int(len(syn.patients)), "slices": int(len(syn)), "has_masks": has_masks}}
    reference_note = ("test" if test is not None
                      else "holdout (no --test given: the holdout patients are the real reference)")
    report = build_report(command="cmraudit evaluate", config=config.to_dict(), seed=config.seed,
                          seeds={"audit": config.seed}, device=str(device),
                          source=f"external synthetic set {config.synthetic}",
                          parts=parts, paired=sets["paired"], sections=sections, started=started, timings=timings,
                          generator=gsec, counts=counts, data_extra={"reference": reference_note})
    _write_report(run_dir, report.to_dict())

    render_html(run_dir)
    return RunResult(run_dir=out, report=report, timings=timings, stage_status=status)
