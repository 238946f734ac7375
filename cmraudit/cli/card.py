"""``cmraudit card RUN``: write the Markdown model / data card of a run (cmraudit.report.card)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..io_guard import check_output, write_text_atomic
from ..progress import make_console
from ..report.card import CARD_NAME, SIGNATURE, build_card, read_run_report, split_patient_ids

console = make_console()


def card_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory holding report.json (or the report.json itself)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output Markdown file (default RUN_DIR/card.md)."),
) -> None:
    """Write a Markdown model / data card: intended use, data, generator, DP budget, verdicts, limits, sharing."""
    src, report = read_run_report(run_dir)
    target = src.parent / CARD_NAME if out is None else out
    check_output(target, inputs=[("RUN_DIR", src.parent), ("report", src)] if out is not None else [("report", src)],
                 option="--out", kind="file", signature=SIGNATURE)
    write_text_atomic(target, build_card(report, source=src.name, patient_ids=split_patient_ids(src.parent)))
    console.print(f"card -> {target} (shareable: no patient data; lists which run files are private)")


def register(app: typer.Typer) -> None:
    app.command("card")(card_cmd)
