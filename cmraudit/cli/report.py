"""``cmraudit report`` · ``cmraudit compare`` · ``cmraudit gate`` (DESIGN.md § 8)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def report_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory holding report.json (written by `cmraudit run` or `cmraudit audit`)."),
    include_real_images: bool = typer.Option(
        False, "--include-real-images", help="Also embed REAL patient images (training samples, real side of closest pairs). The report is then not shareable."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Output HTML file (default RUN_DIR/report.html)."),
) -> None:
    """Render the self-contained HTML report of a run (validates report.json first)."""
    from ..report.html import render_html

    path = render_html(run_dir, include_real_images=include_real_images, out=out)
    note = " [bold red](contains real patient images)[/]" if include_real_images else " (shareable: no real patient image)"
    console.print(f"report -> {path}{note}")


def compare_cmd(
    run_dirs: List[Path] = typer.Argument(..., help="One or more run directories (or report.json files) to compare."),
    out: Path = typer.Option(..., "--out", help="Output directory for compare.csv, compare.md, compare.json and pareto.png."),
) -> None:
    """Trade-off table and Pareto plot (fidelity vs utility vs privacy) across generators."""
    from ..report.compare import COLUMNS, compare_runs

    result = compare_runs(run_dirs, out=out)
    table = Table(title="fidelity · utility · privacy")
    for key, label, _ in COLUMNS:
        table.add_column(label, justify="left" if key in ("run", "generator") else "right", overflow="fold")
    table.add_column("Pareto")
    for row in result.rows:
        table.add_row(*[row.cell(key) for key, _, _ in COLUMNS], "yes" if row.pareto_optimal else "")
    console.print(table)
    console.print(f"wrote {', '.join(str(p) for p in result.files)}")


def gate_cmd(
    report: Path = typer.Argument(..., help="report.json (or its run directory)."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy TOML (budgets per rule); default policy when omitted (see docs/concepts.md#gate)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Also write the result as JUnit XML (for CI test reports)."),
) -> int:
    """Check a report against a privacy policy: exit 0 pass, 1 a rule failed, 2 bad policy or report."""
    from ..report.gate import evaluate_gate, write_junit
    from ..report.io import read_report, resolve_report_path
    from ..report.policy import RULE_HELP, load_policy

    pol = load_policy(policy)
    path = resolve_report_path(report)
    rep = read_report(path)
    result = evaluate_gate(rep, pol, source=str(path))
    table = Table(title=f"privacy gate — {path} ({pol.source})")
    table.add_column("rule", no_wrap=True)
    for col, just in (("budget", "right"), ("CI upper", "right"), ("point", "right"), ("result", "center"), ("detail", "left")):
        table.add_column(col, justify=just, overflow="fold")
    style = {"pass": "green", "fail": "bold red", "off": "dim"}
    for r in result.rules:
        table.add_row(
            r.rule,
            "—" if r.budget is None else f"{r.budget:g}",
            "—" if r.upper is None else f"{r.upper:.4g}",
            "—" if r.value is None else f"{r.value:.4g}",
            f"[{style[r.status]}]{r.status.upper()}[/]",
            r.short_reason,
        )
    console.print(table)
    if junit is not None:
        write_junit(result, junit)
        console.print(f"JUnit XML -> {junit}")
    if result.passed:
        console.print("[green]gate PASSED[/]")
        return 0
    for r in result.failed_rules:
        hint = f" [{r.hint}]" if r.hint else ""
        print(f"gate FAILED: rule {r.rule} — {RULE_HELP.get(r.rule, '')}: {r.reason}{hint}", file=sys.stderr)
    return 1


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("compare")(compare_cmd)
    app.command("gate")(gate_cmd)
