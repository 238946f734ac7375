"""``cmraudit audit``: the privacy audit of a synthetic set against prepared train / holdout sets.

Parses the options into :class:`cmraudit.auditing.AuditRunConfig` and calls :func:`cmraudit.auditing.audit`
(also ``cmraudit.audit`` in Python), which writes OUT/report.json (privacy
section filled, the other stages marked skipped) and OUT/privacy/ (per-slice tables, top-k pair
images with real slices: keep OUT local).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..auditing import AuditRunConfig, audit
from ..errors import UsageError
from ..estimates import is_skipped
from ..privacy.config import lira_statistics
from ..progress import make_console
from ..registry import ATTACKS, EXECUTORS, FEATURE_SPACES
from . import _state

console = make_console()


def _summary_table(d: dict) -> Table:
    t = Table(title="privacy audit")
    for c in ("metric", "value", "95% CI"):
        t.add_column(c)

    def row(name, e):
        if isinstance(e, dict) and "value" in e:
            ci = e.get("ci") or [None, None]
            fmt = lambda x: "–" if x is None else f"{x:.4g}"  # noqa: E731
            t.add_row(name, fmt(e["value"]), f"[{fmt(ci[0])}, {fmt(ci[1])}]")
        elif is_skipped(e):
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
    holdout: Path = typer.Option(
        ..., "--holdout", help="Prepared dataset of held-out patients (non-members; calibration)."
    ),
    synthetic: Path = typer.Option(..., "--synthetic", help="Prepared dataset of synthetic slices to audit."),
    out: Path = typer.Option(
        ..., "--out", help="Output directory: report.json and privacy/ artefacts (local: shows real slices)."
    ),
    model: Optional[Path] = typer.Option(
        None,
        "--model",
        help="RUN_DIR (or RUN_DIR/model) of the fitted generator: enables white-box and shadow attacks.",
    ),
    feature: str = typer.Option(
        "pixel,domain",
        "--feature",
        help=f"Comma-separated feature spaces: {', '.join(FEATURE_SPACES.names())} (the registered copy search "
        "always runs).",
    ),
    encoder: Optional[Path] = typer.Option(
        None,
        "--encoder",
        help="User encoder for the domain space (TorchScript file or dir with config.json + weights).",
    ),
    alpha: float = typer.Option(
        1e-3, "--alpha", min=1e-9, max=0.5, help="Target false-positive rate of the calibrated copy threshold."
    ),
    pixel_views: str = typer.Option(
        "none", "--pixel-views", help="'flips' also indexes flipped training slices in pixel space (4x cost)."
    ),
    shadow: int = typer.Option(
        0, "--shadow", min=0, max=1024, help="Train K shadow generators for LiRA (needs --model with a loss); 0 = off."
    ),
    shadow_score: str = typer.Option(
        "loss", "--shadow-score", help=f"LiRA's per-example statistic: {', '.join(lira_statistics())}."
    ),
    executor: str = typer.Option("local", "--executor", help=f"Shadow executor: {', '.join(EXECUTORS.names())}."),
    reference: Optional[Path] = typer.Option(
        None,
        "--reference",
        help="Prepared dataset of reference patients disjoint from train/holdout (offline LiRA), e.g. RUN/data/test.",
    ),
    attacks: Optional[str] = typer.Option(
        None,
        "--attacks",
        help="Comma-separated MIAs to run (default gan_leaks,domias,loss,fcre); registered: "
        f"{', '.join(ATTACKS.names())} (white-box ones need --model; docs/privacy.md).",
    ),
    resamples: int = typer.Option(
        1000, "--resamples", min=1, max=1_000_000, help="Patient-bootstrap resamples for MIA CIs."
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, max=2**32 - 1, help="Random seed (encoder training, folds, bootstrap, shadows)."
    ),
) -> None:
    """Audit a synthetic set for copies, memorisation and membership inference (privacy section of report.json)."""
    names = None
    if attacks is not None:
        names = tuple(a.strip() for a in attacks.split(",") if a.strip())
        if not names:
            raise UsageError(f"--attacks {attacks!r}: give at least one attack name, e.g. --attacks loss,pia,secmi")
    opt = lambda p: None if p is None else str(p)  # noqa: E731
    res = audit(AuditRunConfig(
        train=str(train), holdout=str(holdout), synthetic=str(synthetic), out=str(out), model=opt(model),
        features=tuple(f.strip() for f in feature.split(",") if f.strip()), encoder=opt(encoder), alpha=alpha,
        pixel_views=pixel_views, shadow=shadow, shadow_score=shadow_score, executor=executor, reference=opt(reference),
        attacks=names, resamples=resamples, seed=seed, progress=not _state.QUIET))
    if not _state.QUIET:
        console.print(_summary_table(res.report["privacy"]))
    console.print(f"privacy report -> {res.run_dir / 'report.json'}")


def register(app: typer.Typer) -> None:
    app.command("audit")(audit_cmd)
