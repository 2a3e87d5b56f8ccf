"""`vaelab convert FILE`: a seed's own config file (FlexVAE config.cfg, pytorch-VAE-MNIST config.yaml) as a vaelab config."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import typer

from vaelab.cli.app import app


@app.command()
def convert(
    file: Path = typer.Argument(..., help="FlexVAE's configs/config.cfg (JSON) or pytorch-VAE-MNIST's config/config.yaml"),
    out: Optional[Path] = typer.Option(None, "--out", help="vaelab YAML to write (default ./NAME.yaml)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Set a value in the result: dotted.key=value "
                                             "(repeatable), e.g. --set data.path=../shared/data/mnist"),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists"),
) -> None:
    """Write an equivalent vaelab config: each value names the original key it comes from, and the keys with no
    vaelab equivalent are listed at the top (and printed). Then `vaelab train OUT` trains it."""
    from vaelab.core.checkpoint import atomic_write_text
    from vaelab.core.errors import ConfigError
    from vaelab.use.convert import convert as run_convert

    conv, text = run_convert(file, list(set_ or []))
    path = out or Path(re.sub(r"[^A-Za-z0-9_.-]+", "-", str(conv.config.get("name", "converted"))).strip("-") + ".yaml")
    if path.exists() and not force:
        raise ConfigError(f"--out {path} exists; choose another path or add --force (nothing was written)")
    atomic_write_text(path, text)
    for key, why in conv.unmapped.items():
        typer.echo(f"not converted: {key} ({why})", err=True)
    for note in conv.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(str(path))
