"""``cmraudit generators [list|check NAME]``."""
from __future__ import annotations

import typer
from rich.table import Table

from ..generators.registry import CONFLICTS, get_plugin, list_generators
from ..progress import make_console
from ..testing import check_generator

gen_app = typer.Typer(
    help="List installed generator plugins and check them.", no_args_is_help=False, invoke_without_command=True
)
console = make_console()


@gen_app.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        list_cmd()


@gen_app.command("list")
def list_cmd() -> None:
    """List generators registered under the entry-point group cmraudit.generators (broken ones with their error)."""
    table = Table(title="cmraudit generators")
    for col in ("name", "status", "distribution", "version", "entry point"):
        table.add_column(col)
    plugins = list_generators()
    for p in plugins:
        table.add_row(p.name, "ok" if p.ok else "broken", p.distribution, p.version, p.value)
    console.print(table)
    for p in plugins:
        if not p.ok:  # plain lines: the whole error, never truncated by the table
            typer.echo(f"broken: {p.name} ({p.distribution} {p.version}): {p.error}")
    for p in CONFLICTS:  # a third-party entry point reusing a taken (e.g. built-in) name: never used
        typer.echo(f"ignored: {p.name} ({p.distribution} {p.version}, {p.value}): {p.error}")


@gen_app.command("check")
def check_cmd(name: str = typer.Argument(..., help="Registered generator name.")) -> None:
    """Run the plugin conformance suite (cmraudit.testing.check_generator) on NAME with its micro preset."""
    info = get_plugin(name)

    results = check_generator(info.cls, name=name)
    table = Table(title=f"conformance: {name}")
    table.add_column("check")
    table.add_column("result")
    failed = 0
    for r in results:
        table.add_row(r.name, "pass" if r.passed else f"skipped: {r.message}" if r.skipped else f"FAIL: {r.message}")
        failed += r.failed
    console.print(table)
    if failed:
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.add_typer(gen_app, name="generators")
