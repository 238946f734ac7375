"""``cmraudit plan``: what an audit of a given size can detect, before any training (cmraudit.plan)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..plan import format_plan, plan_audit
from ..report.policy import load_policy


def plan_cmd(
    train_patients: int = typer.Option(
        ..., "--train-patients", min=2, help="Patients the generator trains on (members)."
    ),
    holdout_patients: int = typer.Option(
        ..., "--holdout-patients", min=2, help="Held-out patients (non-members, calibration)."
    ),
    synthetic: int = typer.Option(..., "--synthetic", min=1, help="Synthetic slices to audit."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Gate policy TOML (default: the default policy)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Print the minimum detectable copy rate and which gate rules are decidable at these sizes."""
    p = plan_audit(
        train_patients=train_patients,
        holdout_patients=holdout_patients,
        synthetic=synthetic,
        policy=load_policy(policy),
    )
    typer.echo(json.dumps(p.to_dict(), indent=2) if as_json else format_plan(p))


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_cmd)
