"""`vaelab export` and `vaelab import-diffusers`: hand models to and take them from the Hugging Face ecosystem."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vaelab.cli.app import app


@app.command()
def export(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run folder"),
    to: Path = typer.Option(..., "--to", help="Folder to write (must not exist, or be empty)"),
    format: str = typer.Option("vaelab", "--format", help="vaelab (config.json + model.safetensors + README.md) "
                               "or diffusers (an AutoencoderKL folder; seed 001-style architectures)"),
) -> None:
    """Write a run as a model folder: `load_run` (vaelab format) or diffusers' AutoencoderKL.from_pretrained
    (diffusers format) reads it back with the same outputs."""
    from vaelab.cli.use_cmds import open_reading
    from vaelab.use.export import export_run

    folder, notes = export_run(open_reading(ctx, run), to, format=format)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(str(folder))


@app.command("import-diffusers")
def import_diffusers(
    folder: Path = typer.Argument(..., help="A diffusers AutoencoderKL folder (config.json + weights)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder to write (default runs/NAME-TIMESTAMP)"),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default: the folder's name)"),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset the run evaluates and fine-tunes on: NAME, "
                                       "NAME:PATH or a YAML file with a data: section (default: image folder, no path)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Set a value of the run's config: dotted.key=value "
                                             "(repeatable), e.g. --set train.batch_size=8 for the fine-tuning"),
) -> None:
    """Turn a diffusers AutoencoderKL into a vaelab run (seed 001 layer vocabulary): evaluate, sample or
    fine-tune it (`vaelab train --resume RUN --set train.epochs=N`) like any run. Needs `pip install vaelab[diffusers]`."""
    from vaelab.use.diffusers_interop import import_diffusers as run_import

    res = run_import(folder, out, name=name, data=data, overrides=list(set_ or []))
    for note in res.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(str(res.run_dir))
