"""`vaelab memory`: the largest training batch that fits the device."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vaelab.cli.app import app


@app.command()
def memory(
    config: Path = typer.Argument(..., help="YAML config whose training step is measured"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config value: dotted.key=value (repeatable)"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda (or cuda:N), auto"),
    limit_gb: Optional[float] = typer.Option(None, "--limit-gb", help="Memory to fit in (default: the device's free memory)"),
    margin: float = typer.Option(0.1, "--margin", help="Safety margin kept free, as a fraction of the limit"),
    confirm: Optional[bool] = typer.Option(None, "--confirm/--no-confirm", help="Run the chosen batch to check (default: on CUDA)"),
) -> None:
    """Measure a whole training step's peak memory at a few batch sizes and print the largest batch that fits."""
    from vaelab.core.config import load_config
    from vaelab.training.memory import memory_report

    cfg = load_config(config, list(set_ or []))
    report = memory_report(cfg, device=device, limit_gb=limit_gb, margin=margin, confirm=confirm)
    typer.echo(report.summary())
    typer.echo(f"batch_size: {report.batch}")
