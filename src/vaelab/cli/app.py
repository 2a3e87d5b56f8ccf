"""The Typer application every command module registers on."""
import typer

app = typer.Typer(
    name="vaelab",
    help="Build, train, use and evolve variational autoencoders from declarative configs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
