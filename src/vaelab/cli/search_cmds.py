"""`vaelab search` and `vaelab search-report`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vaelab.cli.app import app


@app.command()
def search(
    space: Path = typer.Argument(..., help="Search-space YAML (genes, template, objectives, search settings)"),
    storage: Optional[str] = typer.Option(None, "--storage", help="postgresql://..., mysql://..., sqlite:///f.db, grpc://host:port "
                                          "or a .journal path (default: study.journal in the search folder)"),
    worker: bool = typer.Option(False, "--worker", help="Join the shared study as one more worker (own random seed, no summary)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Search folder (default searches/NAME); rerun to resume"),
    trials: Optional[int] = typer.Option(None, "--trials", help="Trials in all, across workers (default search.trials)"),
) -> None:
    """Evolve architectures with NSGA-II (+ surrogate pre-screening); prints the search folder."""
    from vaelab.search.runner import run_search

    result = run_search(space, out=out, storage=storage, trials=trials, worker=worker)
    if not worker:
        typer.echo(f"trials: {', '.join(f'{k} {v}' for k, v in sorted(result.counts.items()))}", err=True)
        typer.echo(f"report: vaelab search-report {result.folder}", err=True)
    typer.echo(str(result.folder))


@app.command("search-report")
def search_report(
    folder: Path = typer.Argument(..., help="Search folder written by `vaelab search`"),
    storage: Optional[str] = typer.Option(None, "--storage", help="Storage URL when not the folder's own journal (see its storage.txt)"),
) -> None:
    """Pareto front and hypervolume per generation (PNG), Pareto-optimal architectures, trials.csv."""
    from vaelab.search.report import fmt, pareto_lines, search_report as make_report

    rep = make_report(folder, storage)
    typer.echo(f"trials: {', '.join(f'{k} {v}' for k, v in sorted(rep.counts.items()))}")
    typer.echo("hypervolume per generation: " + ", ".join(fmt(h) for h in rep.hypervolume))
    for q in rep.quality:
        typer.echo(f"surrogate gen {q['generation']} (n={q['n']}): " + ", ".join(
            f"{k} {fmt(v)}" for k, v in q.items() if k not in ("generation", "n")))
    typer.echo("Pareto-optimal architectures:")
    for line in pareto_lines(rep):
        typer.echo("  " + line)
    for p in [rep.trials_csv, rep.quality_csv, *rep.figures, rep.folder / "pareto.json"]:
        typer.echo(str(p))
