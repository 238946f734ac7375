"""``cmraudit evaluate``: privacy, fidelity and utility of a synthetic set you already have (one API call)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..estimates import is_skipped
from ..evaluation import EvaluateConfig, evaluate
from ..progress import make_console
from . import _state

console = make_console()


def evaluate_cmd(
    train: Path = typer.Option(..., "--train", help="Prepared dataset of the generator's training patients (members)."),
    holdout: Path = typer.Option(
        ..., "--holdout", help="Prepared dataset of held-out patients (non-members; calibration)."
    ),
    synthetic: Path = typer.Option(
        ..., "--synthetic", help="Prepared synthetic dataset (e.g. from `cmraudit data import images`)."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output directory: report.json, report.html, synthetic/, samples.png, privacy/ "
        "(its pair images show real slices: keep it local).",
    ),
    test: Optional[Path] = typer.Option(
        None,
        "--test",
        help="Prepared dataset of real test patients (fidelity reference, segmentation test); default: the holdout.",
    ),
    paired: Optional[Path] = typer.Option(
        None,
        "--paired",
        help="Prepared dataset of images generated from the --test masks (row i from test slice i): paired fidelity.",
    ),
    name: Optional[str] = typer.Option(
        None, "--name", help="Name of the synthetic set in the report and in `compare` (default: its folder name)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the feature encoder, bootstrap, attack folds and segmenters."),
    utility_preset: str = typer.Option(
        "quick", "--utility-preset", help="Segmenter preset for utility: quick (CPU) or paper."
    ),
    device: str = typer.Option("auto", "--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the report in --out."),
) -> None:
    """Audit any synthetic set on all three axes (run without fit/sample); same report.json/report.html as run."""
    cfg = EvaluateConfig(
        train=str(train),
        holdout=str(holdout),
        synthetic=str(synthetic),
        out=str(out),
        test=None if test is None else str(test),
        paired=None if paired is None else str(paired),
        name=name,
        seed=seed,
        utility_preset=utility_preset,
        device=device,
        overwrite=overwrite,
        progress=not _state.QUIET,
    )
    res = evaluate(cfg)
    table = Table(title=f"cmraudit evaluate: {res.report['generator']['name']} → {res.run_dir}")
    for col, just in (("stage", "left"), ("status", "left"), ("time (s)", "right")):
        table.add_column(col, justify=just)
    for stage in ("privacy", "fidelity", "utility"):
        entry = res.report.get(stage)
        status = f"skipped: {entry.get('reason')}" if is_skipped(entry) else "done"
        table.add_row(stage, status, f"{res.timings.get(stage, 0.0):.1f}")
    console.print(table)
    console.print(f"report: {res.run_dir / 'report.json'}   html: {res.run_dir / 'report.html'}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
