"""The Typer application every command module registers on, and how errors reach the user.

Every failure is one line on stderr, never a traceback. Exit codes: 0 success; 2 a usage error (a bad
command-line argument, config value, layer string or name, or a data file, checkpoint or folder named that is
missing or malformed: fix the input and rerun); 1 a runtime failure (training that cannot go on, a run folder
in use by another process, a file the system refuses to write, out of memory); 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Optional, Sequence

import typer
from typer.core import TyperGroup

# click's exceptions, or the copy newer Typer versions vendor: whichever module typer.BadParameter comes from
_click_errors = importlib.import_module(typer.BadParameter.__module__)
ClickException = _click_errors.ClickException
NoArgsIsHelpError = getattr(_click_errors, "NoArgsIsHelpError", ())  # click >= 8.2
Abort = (typer.Abort, *((_click_errors.Abort,) if hasattr(_click_errors, "Abort") else ()))

USAGE, RUNTIME, INTERRUPTED = 2, 1, 130


class OneLineErrors(TyperGroup):
    """Click's usage errors (bad option values, missing arguments) as one line instead of a usage block."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as e:  # usage errors: bad option values, missing arguments, unknown commands
            if not standalone_mode:
                raise
            if isinstance(e, NoArgsIsHelpError):  # no arguments at all: the help is the answer
                e.show()
            else:
                print(f"error: {usage_line(e)}", file=sys.stderr)
            sys.exit(e.exit_code)
        except Abort:
            if not standalone_mode:
                raise
            print("error: aborted", file=sys.stderr)
            sys.exit(RUNTIME)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)  # rv is an exit code after --help or typer.Exit
        return rv


def usage_line(e: Exception) -> str:
    msg = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    if ctx is None:
        return msg
    return f"{ctx.command_path}: {msg} (see '{ctx.command_path} --help')"


def exit_code(e: BaseException) -> int:
    """2 for errors the user fixes in the input, 1 for failures met while running (see the module doc)."""
    return int(getattr(e, "exit_code", RUNTIME))


def validation_line(e: Any) -> str:
    """One line for a pydantic ValidationError that reached the CLI boundary: the message of a vaelab error raised
    inside a validator as it is (pydantic wraps it in "1 validation error for X ... Value error, ..."), otherwise the
    dotted field and pydantic's message."""
    from vaelab.core.errors import VaelabError

    lines = []
    for err in e.errors():
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, VaelabError):
            lines.append(" ".join(str(inner).split()))
            continue
        where = ".".join(str(p) for p in err.get("loc", ()))
        msg = " ".join(str(err.get("msg", "")).removeprefix("Value error, ").split())
        lines.append(f"{where}: {msg}" if where and not msg.startswith(where) else msg)
    return "; ".join(dict.fromkeys(lines)) or "invalid value"


def error_line(e: BaseException) -> str:
    """One line for an exception that reached the CLI boundary."""
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return (f"{where}{e.strerror or e} (check that the path exists and is writable by you, "
                "or choose another folder)")
    if isinstance(e, MemoryError):
        return "out of memory: shrink the model or the batch (see `vaelab check` for the estimate)"
    return " ".join(str(e).split()) or type(e).__name__


app = typer.Typer(
    name="vaelab",
    cls=OneLineErrors,
    help="Build, train, use and evolve variational autoencoders from declarative configs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
)


def _version(value: bool) -> None:
    if value:
        from vaelab import __version__

        typer.echo(f"vaelab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print vaelab's version and exit."),
) -> None:
    """Build, train, use and evolve variational autoencoders from declarative configs."""
