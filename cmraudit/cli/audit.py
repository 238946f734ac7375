"""``cmraudit audit``: the privacy audit of a synthetic set against prepared train / holdout sets.

One call of :func:`cmraudit.privacy.audit.audit_privacy`; writes OUT/report.json (privacy
section filled, the other stages marked skipped) and OUT/privacy/ (per-slice tables, top-k pair
images with real slices: keep OUT local).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..progress import make_console
from . import _state

console = make_console()


def _load_model(path: Path):
    from ..generators.checkpoint import load_generator

    model_dir = path / "model" if (path / "model" / "config.json").is_file() else path
    return load_generator(model_dir)


def _summary_table(d: dict) -> Table:
    t = Table(title="privacy audit")
    for c in ("metric", "value", "95% CI"):
        t.add_column(c)

    def row(name, e):
        if isinstance(e, dict) and "value" in e:
            ci = e.get("ci") or [None, None]
            fmt = lambda x: "–" if x is None else f"{x:.4g}"  # noqa: E731
            t.add_row(name, fmt(e["value"]), f"[{fmt(ci[0])}, {fmt(ci[1])}]")
        elif isinstance(e, dict) and e.get("status") == "skipped":
            t.add_row(name, "skipped", e.get("reason", "")[:60])

    for space, sp in d["feature_spaces"].items():
        cd = sp["copy_detection"]
        row(f"{space}: copy rate", cd["copy_rate"])
        row(f"{space}: patients copied", cd["patients_copied"])
        row(f"{space}: closer to train", cd["closer_to_train_share"])
    for attack, e in d["mia"].items():
        if isinstance(e, dict) and "slice" in e:
            row(f"MIA {attack}: AUC (patient)", e["patient"]["auc"])
        else:
            row(f"MIA {attack}", e)
    return t


def audit_cmd(
    train: Path = typer.Option(..., "--train", help="Prepared dataset of the generator's training patients (members)."),
    holdout: Path = typer.Option(..., "--holdout", help="Prepared dataset of held-out patients (non-members; calibration)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="Prepared dataset of synthetic slices to audit."),
    out: Path = typer.Option(..., "--out", help="Output directory: report.json and privacy/ artefacts (local: shows real slices)."),
    model: Optional[Path] = typer.Option(None, "--model", help="RUN_DIR (or RUN_DIR/model) of the fitted generator: enables white-box and shadow attacks."),
    feature: str = typer.Option("pixel,domain", "--feature", help="Comma-separated feature spaces: pixel, domain, polar, spectral (the registered copy search always runs)."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="User encoder for the domain space (TorchScript file or dir with config.json + weights)."),
    alpha: float = typer.Option(
        1e-3, "--alpha", min=1e-9, max=0.5,
        help="Target false-positive rate of the calibrated copy threshold.",
    ),
    pixel_views: str = typer.Option("none", "--pixel-views", help="'flips' also indexes flipped training slices in pixel space (4x cost)."),
    shadow: int = typer.Option(
        0, "--shadow", min=0, max=1024,
        help="Train K shadow generators for LiRA (needs --model with a loss); 0 = off.",
    ),
    shadow_score: str = typer.Option(
        "loss", "--shadow-score",
        help="LiRA's per-example statistic: loss or a registered attack "
        "(pia, pian, secmi, sima, sima_mc, conditional_gap)."),
    executor: str = typer.Option("local", "--executor", help="Shadow executor: local, slurm, ray, inline."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Prepared dataset of reference patients disjoint from train/holdout (offline LiRA), e.g. RUN/data/test."),
    attacks: Optional[str] = typer.Option(
        None, "--attacks", help="Comma-separated MIAs to run (default gan_leaks,domias,loss,fcre); add pia, pian, "
        "secmi, sima, sima_mc, conditional_gap, flow_gap (need --model; docs/privacy.md)."),
    resamples: int = typer.Option(
        1000, "--resamples", min=1, max=1_000_000,
        help="Patient-bootstrap resamples for MIA CIs.",
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, max=2**32 - 1,
        help="Random seed (encoder training, folds, bootstrap, shadows).",
    ),
) -> None:
    """Audit a synthetic set for copies, memorisation and membership inference (privacy section of report.json)."""
    from ..errors import UsageError
    from ..privacy import AuditConfig, ShadowConfig, audit_privacy

    spaces = [f.strip() for f in feature.split(",") if f.strip()]
    known = {"pixel", "domain", "polar", "spectral"}
    bad = [f for f in spaces if f not in known]
    if bad or not spaces:
        raise UsageError(f"--feature {feature!r}: unknown space(s) {bad or spaces}; expected a comma-separated subset of {sorted(known)}")
    from ..io_guard import check_output, make_output_dir, remove_if_created
    from ..pipeline import read_input_dataset

    check_output(out, inputs=[("--train", train), ("--holdout", holdout), ("--synthetic", synthetic),
                              ("--model", model),
                              ("--reference", reference), ("--encoder", encoder)], option="--out", produces="audit")
    if pixel_views not in ("none", "flips"):
        raise UsageError(f"--pixel-views {pixel_views!r}: expected none or flips")
    named = (("train", train), ("holdout", holdout), ("synthetic", synthetic))
    ds = {n: read_input_dataset(p, option=f"--{n}") for n, p in named}
    ref = read_input_dataset(reference, option="--reference") if reference is not None else None
    gen = _load_model(model) if model is not None else None
    domain_params = {"encoder": str(encoder)} if encoder is not None else {}
    masks = all(d.meta.get("has_masks", True) for d in ds.values())  # image-only sets: no mask-copy search
    extra = {}
    if attacks is not None:
        names = tuple(dict.fromkeys(a.strip() for a in attacks.split(",") if a.strip()))
        if not names:
            raise UsageError(f"--attacks {attacks!r}: give at least one attack name, e.g. --attacks loss,pia,secmi")
        extra["attacks"] = names
    try:
        config = AuditConfig(alpha=alpha, pixel_views=pixel_views, n_resamples=resamples, domain_params=domain_params,
                             masks=masks, **extra)
    except UsageError as e:
        named = attacks is not None and "unknown attacks" in str(e)
        raise UsageError(f"--attacks {attacks!r}: {e}" if named else str(e)) from e
    shadow_cfg = ShadowConfig(k=shadow, executor=executor, workdir=str(out / "privacy" / "shadows"),
                              score_attack=shadow_score) if shadow else None
    created = not out.exists()
    make_output_dir(out, kind="audit")
    try:
        res = audit_privacy(train=ds["train"], holdout=ds["holdout"], synthetic=ds["synthetic"], generator=gen,
                            features=tuple(spaces), seed=seed, config=config, out_dir=out, progress=not _state.QUIET,
                            shadow=shadow_cfg, reference=ref)
        d = res.to_dict()
        report = _report(d, ds, gen=gen, seed=seed, config=config)
        path = _write(out, report)
    except BaseException:
        remove_if_created(out, created)  # never a half-written audit; never an existing directory
        raise
    if not _state.QUIET:
        console.print(_summary_table(d))
    console.print(f"privacy report -> {path}")


def _report(privacy: dict, ds: dict, *, gen, seed: int, config) -> dict:
    from datetime import datetime, timezone

    from .. import __version__
    from ..estimates import skipped

    try:
        from ..report.schema import SCHEMA_VERSION
    except ImportError:  # pragma: no cover
        SCHEMA_VERSION = "1.0"

    def counts(d, with_patients=True):
        c = {"slices": int(len(d))}
        if with_patients:
            c["patients"] = int(len(set(d.patient_id.astype(str))))
        return c

    gen_block = {"name": getattr(gen, "name", type(gen).__name__) if gen is not None else "unknown (synthetic set only)",
                 "params": gen.get_params() if gen is not None and hasattr(gen, "get_params") else {}, "dp": None}
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {"cmraudit_version": __version__, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seed": int(seed), "device": "cpu", "config": {"command": "audit", "privacy": config.to_dict()}},
        "data": {"train": counts(ds["train"]), "holdout": counts(ds["holdout"]), "synthetic": counts(ds["synthetic"], False)},
        "generator": gen_block,
        "fidelity": skipped("not part of cmraudit audit (run cmraudit run for fidelity)"),
        "utility": skipped("not part of cmraudit audit (run cmraudit run for utility)"),
        "privacy": privacy,
        "verdicts": None,
    }


def _write(out: Path, report: dict) -> Path:
    try:
        from ..report.gate import compute_verdicts
        from ..report.io import write_report
    except ImportError:  # pragma: no cover - report package not present
        out.mkdir(parents=True, exist_ok=True)
        p = out / "report.json"
        p.write_text(json.dumps(report, indent=2, default=str))
        return p
    try:
        report["verdicts"] = compute_verdicts(report)
    except Exception:  # noqa: BLE001 - verdicts are advisory here; the gate command recomputes them
        report.pop("verdicts", None)
        report["verdicts"] = {"overall": "inconclusive", "checks": {}}
    return write_report(out, report)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit_cmd)
