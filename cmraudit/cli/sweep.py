"""``cmraudit sweep``: one ``cmraudit run`` per privacy budget and the privacy–utility plot."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..io_guard import check_output
from ..pipeline import RunConfig
from ..progress import make_console
from ..sweep import parse_epsilons, run_sweep
from . import _state
from .pipeline_cmds import parse_overrides

console = make_console()


def sweep_cmd(
    generator: str = typer.Option(
        ..., "--generator", "-g", help="Registered generator name (must support DP for finite ε)."
    ),
    epsilons: str = typer.Option(
        "1,4,8,inf", "--epsilons", help="Comma-separated ε per patient; inf = trained without DP."
    ),
    data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset; default: the embedded phantom."),
    preset: str = typer.Option(
        "quick", "--preset", help="micro (smoke test), quick (CPU, 64², minutes) or paper (reference study, GPU)."
    ),
    out: Path = typer.Option(..., "--out", help="Sweep directory: eps-<ε>/ run directories, sweep.json, sweep.png."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=2**32 - 1, help="Seed of the split, training and sampling (same for every ε)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override a generator parameter (JSON values)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo every point, replacing the finished runs in --out."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Keep the finished points (same settings, else refused), resume an interrupted one, "
        "run the rest, and write the summary anew."
    ),
    dp_split: Optional[str] = typer.Option(
        None, "--dp-split", help="DP stage weights for every finite ε, e.g. mask=0.3,image=0.7."
    ),
) -> None:
    """Train and audit the generator at each ε; plot fidelity, utility and MIA AUC against ε."""
    check_output(out, inputs=[("--data", data)], option="--out", produces="sweep")
    eps = parse_epsilons(epsilons)
    cfg = RunConfig(
        generator=generator,
        data=None if data is None else str(data),
        preset=preset,
        seed=seed,
        device=device,
        params=parse_overrides(sets),
        overwrite=overwrite,
        resume=resume,
        progress=not _state.QUIET,
        dp_split=dp_split,
    )
    res = run_sweep(config=cfg, epsilons=eps, out=out)
    table = Table(title=f"cmraudit sweep: {generator} → {out}")
    for col in ("ε target", "ε spent", "Fréchet dist.", "Dice (synthetic)", "MIA AUC ≤", "run"):
        table.add_column(col)
    f = lambda x: "—" if x is None else f"{x:.4g}"  # noqa: E731
    for p in res.points:
        table.add_row(
            "∞ (no DP)" if math.isinf(p.epsilon) else f"{p.epsilon:g}",
            f(p.epsilon_spent),
            f(p.frechet_distance),
            f(p.dice_synthetic),
            f(p.mia_auc_upper),
            p.run_dir,
        )
    console.print(table)
    console.print(f"summary: {res.files[0]}   plot: {res.files[1]}")


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
