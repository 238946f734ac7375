"""The ``cmraudit`` command: a typer app, one module per command group, errors mapped to exit codes.

No logic lives here: every command is one call of the Python API.
"""
from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from .. import __version__
from ..errors import EXIT_INTERNAL, EXIT_USAGE, CmrAuditError
from . import _state

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException
    from typer.exceptions import Abort, Exit
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import Abort, ClickException, Exit

app = typer.Typer(
    name="cmraudit",
    help="Train synthetic cardiac-MRI generators and audit their fidelity, utility and privacy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cmraudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (without local variables) on errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, envvar="CMRAUDIT_THREADS",
        help="CPU threads for torch, FAISS and BLAS (default: all cores). On a shared machine, "
             "fewer threads than cores avoids oversubscription.",
    ),
) -> None:
    _state.DEBUG = debug
    _state.QUIET = quiet
    if threads is not None:
        from ..device import set_cpu_threads

        set_cpu_threads(threads)


# command groups register themselves; each module has register(app)
from . import data as _data  # noqa: E402
from . import generators as _generators  # noqa: E402
from . import pipeline_cmds as _pipeline_cmds  # noqa: E402
from . import audit as _audit  # noqa: E402
from . import report as _report  # noqa: E402
from . import sweep as _sweep  # noqa: E402
from . import dp_audit as _dp_audit  # noqa: E402

for _mod in (_data, _generators, _pipeline_cmds, _audit, _report, _sweep, _dp_audit):
    _mod.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (DESIGN.md § 8)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state.DEBUG = "--debug" in args
    try:
        rv = app(args=args, prog_name="cmraudit", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except Exit as e:  # pragma: no cover - handled by click when standalone_mode=False
        return e.exit_code
    except ClickException as e:
        e.show(file=sys.stderr)
        return EXIT_USAGE
    except Abort:
        err_console.print("aborted")
        return EXIT_USAGE
    except CmrAuditError as e:
        _report_error(e, f"error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001
        _report_error(e, f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)")
        return EXIT_INTERNAL


def _report_error(e: BaseException, line: str) -> None:
    if _state.DEBUG:
        import traceback

        # plain traceback: never show local variables (they may hold patient data)
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    print(line.replace("\n", " "), file=sys.stderr)


def entry() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
