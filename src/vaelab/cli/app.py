"""The Typer application every command module registers on, with `--version` and shell completion."""
from typing import Optional

import typer

app = typer.Typer(
    name="vaelab",
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
