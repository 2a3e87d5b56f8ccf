"""`vaelab train`, `vaelab check`, `vaelab layers`, `vaelab presets`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from vaelab.cli.app import app

SetOpt = typer.Option(None, "--set", help="Override a config value: dotted.key=value (repeatable), e.g. --set train.lr=3e-4")
MaxMemoryOpt = typer.Option(None, "--max-memory-gb", min=0.001,
                            help="Refuse a model whose estimated training memory exceeds this many GB (default: the "
                                 "device's free memory); same as --set train.max_memory_gb=N")


def _with_limit(set_: Optional[List[str]], max_memory_gb: Optional[float]) -> list[str]:
    return list(set_ or []) + ([f"train.max_memory_gb={max_memory_gb}"] if max_memory_gb is not None else [])


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config; without one, the bundled default (digits MLP VAE)"),
    set_: Optional[List[str]] = SetOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder to write (default runs/NAME-TIMESTAMP)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder; --set train.epochs=N extends it"),
    max_memory_gb: Optional[float] = MaxMemoryOpt,
) -> None:
    """Train a VAE and print the run folder it wrote (checkpoint, metrics.jsonl, figures)."""
    from vaelab.core.config import default_config_path, load_config
    from vaelab.training.trainer import train as run_training

    if resume is not None:
        if config is not None:
            raise typer.BadParameter("give either CONFIG or --resume RUN, not both")
        run_dir = run_training(resume=resume, overrides=_with_limit(set_, max_memory_gb))
    else:
        cfg = load_config(config or default_config_path(), _with_limit(set_, max_memory_gb))
        run_dir = run_training(cfg, out)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for a script that captures stdout
        typer.echo(str(run_dir))


@app.command()
def check(
    config: Optional[Path] = typer.Argument(None, help="YAML config (default: the bundled one)"),
    set_: Optional[List[str]] = SetOpt,
    data: bool = typer.Option(True, help="Load the data to fix the input shape (--no-data uses model.input_shape)"),
    max_memory_gb: Optional[float] = MaxMemoryOpt,
) -> None:
    """Validate a config and build its model: each layer's output shape and parameter count, no training."""
    from rich.console import Console
    from rich.table import Table

    from vaelab.api import check_config
    from vaelab.core.config import default_config_path

    report = check_config(config or default_config_path(), _with_limit(set_, max_memory_gb), load_data=data)
    table = Table(title=f"{report.name}: input {report.input_shape} -> latent {report.latent_shape}")
    for col in ("section", "#", "layer", "output shape", "params"):
        table.add_column(col, justify="right" if col in ("#", "params") else "left")
    for r in report.rows:
        table.add_row(r.section, str(r.index), r.token, str(tuple(r.out_shape)), f"{r.params:,}")
    console = Console()
    console.print(table)
    console.print(f"total parameters: {report.parameters:,}   likelihood: {report.likelihood}   decoder output: "
                  f"{report.output_shape} per sample   output activation: {report.output_activation}")
    console.print(f"memory: {report.memory}")


@app.command()
def likelihoods() -> None:
    """List the decoder likelihoods usable as model.likelihood, with their options (model.likelihood_args)."""
    from rich.console import Console
    from rich.table import Table

    from vaelab.core.vocab import LIKELIHOODS

    table = Table(title="model.likelihood: NAME, model.likelihood_args: {...}")
    for col in ("name", "outputs per value", "kind", "options (defaults)", "what it is"):
        table.add_column(col)
    for e in LIKELIHOODS.entries():
        opts = e.meta["options"]
        args = ", ".join(f"{k}={f.default}" for k, f in opts.model_fields.items()) or "-"
        table.add_row(e.name, str(e.obj.per_value(opts())), "discrete" if e.obj.discrete else "density", args, e.meta["doc"])
    Console(width=160).print(table)


@app.command()
def layers() -> None:
    """List every layer type with its arguments (the vocabulary of model.encoder / model.decoder)."""
    from rich.console import Console
    from rich.table import Table

    from vaelab.layers import describe_layers

    table = Table(title="layer types: write TYPE_arg_arg..., N*TYPE_... repeats")
    for col in ("type", "arguments", "what it is"):
        table.add_column(col)
    for name, sig, doc in describe_layers():
        table.add_row(name, sig, doc)
    Console(width=140).print(table)


@app.command()
def presets() -> None:
    """List the named architectures usable as model.preset, with their preset_args."""
    import inspect

    from vaelab.model.presets import PRESETS

    for e in PRESETS.entries():
        params = inspect.signature(e.obj).parameters
        args = ", ".join(f"{k}={v.default}" for k, v in params.items() if v.kind == inspect.Parameter.KEYWORD_ONLY)
        typer.echo(f"{e.name:20s} {e.meta.get('doc', '')}\n{'':20s} preset_args: {args}")
