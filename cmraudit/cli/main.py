"""The ``cmraudit`` command: a typer app, one module per command group, errors mapped to exit codes.

No logic lives here: every command is one call of the Python API.
"""
from __future__ import annotations

import sys
import warnings
from typing import Optional

import typer

from .. import __version__
from ..cpu import configure_cpu, end_invocation
from ..device import MAX_THREADS
from ..errors import EXIT_DATA, EXIT_INTERNAL, EXIT_USAGE, CmrAuditError
from ..io_guard import WRITE_ERRNOS
from ..progress import make_console
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
err_console = make_console(stderr=True)
INTERRUPTED = ("interrupted (Ctrl-C): unfinished outputs were removed (an output being replaced is kept as it was); "
               "a new run or fit continues with --resume")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cmraudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (without local variables) on errors."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bars (nor, without a terminal, status lines)."
    ),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        min=1,
        max=MAX_THREADS,
        envvar="CMRAUDIT_THREADS",
        help=f"CPU threads for torch, FAISS and BLAS, 1–{MAX_THREADS} (default: the CPUs this process may use - "
        "affinity mask, cgroup quota - minus those other processes keep busy, measured at start-up and as each "
        "stage of run / evaluate starts; see cmraudit.cpu).",
    ),
) -> None:
    _state.DEBUG = debug
    _state.QUIET = quiet
    _state.THREADS = configure_cpu(threads)


# command groups register themselves; each module has register(app)
from . import audit as _audit  # noqa: E402
from . import card as _card  # noqa: E402
from . import data as _data  # noqa: E402
from . import dp_audit as _dp_audit  # noqa: E402
from . import evaluate as _evaluate  # noqa: E402
from . import generators as _generators  # noqa: E402
from . import neighbours as _neighbours  # noqa: E402
from . import pipeline_cmds as _pipeline_cmds  # noqa: E402
from . import plan as _plan  # noqa: E402
from . import report as _report  # noqa: E402
from . import sweep as _sweep  # noqa: E402

for _mod in (_data, _generators, _pipeline_cmds, _audit, _report, _sweep, _plan, _evaluate, _dp_audit, _card,
             _neighbours):
    _mod.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (docs/design.md § 8)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state.DEBUG = "--debug" in args
    # prepared datasets are read-only memmaps that cmraudit only reads: torch's warning on wrapping them is noise here
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
    from ..progress import heartbeat

    try:
        with heartbeat(_label(args), enabled=None if not {"--quiet", "-q"} & set(args) else False):
            rv = app(args=args, prog_name="cmraudit", standalone_mode=False)
        if rv == 130:  # typer turns Ctrl-C into Exit(130) and, outside standalone mode, returns the code silently
            print(INTERRUPTED, file=sys.stderr)
        return int(rv) if isinstance(rv, int) else 0
    except Exit as e:  # typer turns Ctrl-C into Exit(130)
        if isinstance(e.__cause__, KeyboardInterrupt) or isinstance(e.__context__, KeyboardInterrupt):
            print(INTERRUPTED, file=sys.stderr)
        return e.exit_code
    except ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # a group called without a command: its help, as click prints it
            e.show()
            return EXIT_USAGE
        # one line naming the option (click's own format spreads usage over three lines)
        ctx = getattr(e, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None and ctx.command_path else ""
        print(f"error: {e.format_message()}{hint}".replace("\n", " "), file=sys.stderr)
        return EXIT_USAGE
    except Abort:
        print("error: aborted", file=sys.stderr)
        return EXIT_USAGE
    except CmrAuditError as e:
        _report_error(e, f"error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno in WRITE_ERRNOS:  # a file error outside the guarded helpers: still one line naming the file, exit 4
            _report_error(e, f"error: {e.filename or 'a file'}: {e.strerror}")
            return EXIT_DATA
        _report_error(e, f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)")
        return EXIT_INTERNAL
    except Exception as e:  # noqa: BLE001
        _report_error(e, f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)")
        return EXIT_INTERNAL
    finally:
        end_invocation()  # automatic threads belong to this command, not to library use after it in this process


def _label(args: list[str]) -> str:
    """The command words of ``args`` (``generators check``) for the progress lines."""
    words: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == "--threads":
            skip = True
        elif a.startswith("-"):
            if words:
                break
        else:
            words.append(a)
            if len(words) == 2:
                break
    return " ".join(words) or "cmraudit"


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
