"""`vaelab reconstruct|compare|encode|decode|sample|interpolate|evaluate|ood|report`: use a trained run."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vaelab.cli.app import app

DATA_HELP = ("Dataset: NAME, NAME:PATH (e.g. mnist:../shared/data/mnist) or a YAML file with a data: section; "
             "default: the run's own data (test split)")
DataOpt = typer.Option(None, "--data", help=DATA_HELP)
DataPathOpt = typer.Option(None, "--data-path", help="Folder/file for --data NAME (same as NAME:PATH)")
InputOpt = typer.Option(None, "--input", help="Folder of images (searched recursively); outputs mirror its layout")
LimitOpt = typer.Option(None, "--limit", help="Use only the first N items")
AllOpt = typer.Option(False, "--all", help="One file per item for every item (default: the first 64; the .npy/.npz "
                      "always holds every item)")


def _per_item(all_: bool) -> int | None:
    from vaelab.use.outputs import PER_ITEM_FILES

    return None if all_ else PER_ITEM_FILES


def _capped(written: int, total: int, what: str) -> str:
    """The note when the per-item files stopped short of the items."""
    return f"; {what} for the first {written} of {total} items (--all for every one)" if written < total else ""


def open_reading(ctx: typer.Context, path: Path):
    """The run, its folder lock held in shared mode until the command ends: refused while a training writes it."""
    from vaelab.training.run_folder import reading
    from vaelab.use.inputs import open_run

    ctx.with_resource(reading(path))
    return open_run(path)


TileOpt = typer.Option(None, "--tile", help="Tile side in image pixels (a multiple of the model's downsampling factor): "
                       "images of any size, each at its own size, tile by tile (spatial-latent models)")
OverlapOpt = typer.Option(None, "--overlap", help="Tile overlap in pixels, blended (default a quarter of --tile)")
TileStatsOpt = typer.Option("exact", "--tile-stats", help="GroupNorm/attention statistics of tiles: exact (the untiled "
                            "model's; one pass per norm layer), estimate (one whole-image pass: faster, approximate) or "
                            "tile (per tile, as naive tiling: colour shifts)")


def _tiling(tile, overlap, stats):
    from vaelab.use.tiled_files import Tiling

    return None if tile is None else Tiling(tile, overlap, stats)


def _tiled_images(run, data, data_path, input_folder, limit):
    from vaelab.use.tiled_files import folder_images, items_images

    if input_folder is not None and data is None:
        return folder_images(run, input_folder, limit=limit)
    return items_images(_items(run, data, data_path, input_folder, limit))


def _items(run, data, data_path, input_folder, limit, offset=0):
    from vaelab.use.inputs import load_items

    return load_items(run, data=data, data_path=data_path, input_folder=input_folder, limit=limit, offset=offset)


@app.command()
def reconstruct(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run folder (or checkpoint.pt)"),
    data: Optional[str] = DataOpt, data_path: Optional[Path] = DataPathOpt, input: Optional[Path] = InputOpt,
    limit: Optional[int] = LimitOpt,
    label: Optional[int] = typer.Option(None, "--label", help="Condition label for all inputs (conditional models)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default RUN/reconstructions)"),
    all_: bool = AllOpt,
    tile: Optional[int] = TileOpt, overlap: Optional[int] = OverlapOpt, tile_stats: str = TileStatsOpt,
) -> None:
    """Reconstruct inputs: reconstructions.npy, a grid PNG (originals and reconstructions in alternating rows) and
    one PNG per input (mirroring --input's layout) for the first 64 inputs, or all with --all. With --tile: each
    image at its own size, one PNG each, no grid."""
    from vaelab.use.reconstruct import reconstruct as rec

    r = open_reading(ctx, run)
    tiling = _tiling(tile, overlap, tile_stats)
    if tiling is not None:
        from vaelab.use.tiled_files import reconstruct_tiled

        tiling = tiling.checked(r)  # refuse a bad --tile before reading any image
        res = reconstruct_tiled(r, _tiled_images(r, data, data_path, input, limit), out or r.path / "reconstructions",
                                tiling, label=label)
    else:
        res = rec(r, _items(r, data, data_path, input, limit), out or r.path / "reconstructions", label=label,
                  per_item=_per_item(all_))
    typer.echo(f"{res.count} reconstructions in {res.out_dir} (mean squared error {res.mse:.5f})"
               + (f"; grid {res.grid}" if res.grid else "")
               + (_capped(len(res.files), res.count, "PNGs") if res.files else "")
               + (f"; skipped {len(res.skipped)} unreadable" if res.skipped else ""))


@app.command()
def compare(
    ctx: typer.Context,
    runs: List[Path] = typer.Argument(..., help="Run folders whose models to compare"),
    out: Path = typer.Option(..., "--out", help="Figure path (.png)"),
    data: Optional[str] = DataOpt, data_path: Optional[Path] = DataPathOpt, input: Optional[Path] = InputOpt,
    n: int = typer.Option(8, "-n", help="How many inputs"),
) -> None:
    """One figure: originals in the first row, then one row of reconstructions per model (same inputs;
    conditional models get the inputs' labels)."""
    from vaelab.use.reconstruct import compare as cmp

    loaded = [open_reading(ctx, p) for p in runs]
    typer.echo(str(cmp(loaded, _items(loaded[0], data, data_path, input, n), out, n=n)))


@app.command()
def encode(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run folder"),
    out: Path = typer.Option(..., "--out", help="PATH.npz (z, mu, logvar, labels, names, latent_scale) or a folder: one .npy per input"),
    data: Optional[str] = DataOpt, data_path: Optional[Path] = DataPathOpt, input: Optional[Path] = InputOpt,
    limit: Optional[int] = LimitOpt,
    sample: bool = typer.Option(False, "--sample", help="Draw from the posterior instead of taking its mean"),
    seed: int = typer.Option(0, "--seed"),
    label: Optional[int] = typer.Option(None, "--label"),
    all_: bool = typer.Option(False, "--all", help="With a folder --out: one .npy for every item (default: the "
                              "first 64; a .npz --out always holds every item)"),
    tile: Optional[int] = TileOpt, overlap: Optional[int] = OverlapOpt, tile_stats: str = TileStatsOpt,
) -> None:
    """Encode inputs to latents (scaled by the model's latent scale; posterior mean unless --sample); the data's
    labels are kept whenever it has them. With --tile: one .npy per image at the image's own size, and
    image_sizes.json, in the folder --out."""
    from vaelab.use.codec import encode as enc

    r = open_reading(ctx, run)
    tiling = _tiling(tile, overlap, tile_stats)
    if tiling is not None:
        from vaelab.use.tiled_files import encode_tiled

        tiling = tiling.checked(r)
        typer.echo(str(encode_tiled(r, _tiled_images(r, data, data_path, input, limit), out, tiling, sample=sample,
                                    seed=seed, label=label)))
        return
    items = _items(r, data, data_path, input, limit)
    path = enc(r, items, out, sample=sample, seed=seed, label=label, per_item=_per_item(all_))
    note = "" if path.suffix == ".npz" else _capped(min(len(items), _per_item(all_) or len(items)), len(items), ".npy files")
    typer.echo(f"{path}{note}")


@app.command()
def decode(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run folder"),
    latents: Path = typer.Argument(..., help=".npz from `vaelab encode`, a .npy (N, *latent) or a folder of .npy"),
    out: Path = typer.Option(..., "--out", help="Output folder"),
    label: Optional[int] = typer.Option(None, "--label"),
    all_: bool = AllOpt,
    tile: Optional[int] = TileOpt, overlap: Optional[int] = OverlapOpt, tile_stats: str = TileStatsOpt,
) -> None:
    """Decode latents (scaled units) into outputs.npy, and for image models a grid (decoded.png) and one PNG per
    latent for the first 64 latents (all with --all). With --tile: latents of any size (e.g. from
    `encode --tile`), one .npy and PNG each, cropped to image_sizes.json."""
    from vaelab.use.codec import decode as dec

    r = open_reading(ctx, run)
    tiling = _tiling(tile, overlap, tile_stats)
    if tiling is not None:
        from vaelab.use.tiled_files import decode_tiled

        typer.echo(str(decode_tiled(r, latents, out, tiling.checked(r), label=label)))
        return
    typer.echo(str(dec(r, latents, out, label=label, per_item=_per_item(all_))))


@app.command()
def sample(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run folder"),
    n: int = typer.Option(64, "-n", help="Samples (per label with --all-labels)"),
    label: Optional[int] = typer.Option(None, "--label", help="Class to sample (conditional models)"),
    all_labels: bool = typer.Option(False, "--all-labels", help="n samples of every label, one grid row per label"),
    temperature: float = typer.Option(1.0, "--temperature", help="Prior std multiplier"),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default RUN/samples)"),
) -> None:
    """Sample from the prior: samples.npy and samples.png (points models: rendered on a black canvas)."""
    from vaelab.use.sampling import sample as smp

    r = open_reading(ctx, run)
    res = smp(r, n, out or r.path / "samples", label=label, all_labels=all_labels, temperature=temperature, seed=seed)
    typer.echo(f"{res.array}" + (f" {res.figure}" if res.figure else ""))


@app.command()
def interpolate(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run folder"),
    a: str = typer.Argument(..., help="Start: item index of the run's test data, or an image path"),
    b: str = typer.Argument(..., help="End: item index or image path"),
    steps: int = typer.Option(8, "--steps"),
    label: Optional[int] = typer.Option(None, "--label"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default RUN/interpolation)"),
) -> None:
    """Decode points on the line between the posterior means of A and B."""
    from vaelab.use.sampling import interpolate as interp

    r = open_reading(ctx, run)
    typer.echo(str(interp(r, a, b, out or r.path / "interpolation", steps=steps, label=label)))


def _print_table(title: str, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


@app.command()
def evaluate(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run folder"),
    data: Optional[str] = DataOpt, data_path: Optional[Path] = DataPathOpt, input: Optional[Path] = InputOpt,
    limit: Optional[int] = LimitOpt,
    offset: int = typer.Option(0, "--offset", help="Start at item N (with --limit: one slice of a long evaluation; "
                               "each item's samples depend only on --seed and its index)"),
    k: int = typer.Option(1000, "--k", help="Importance samples for the IW-NLL"),
    tsne: bool = typer.Option(False, "--tsne", help="Seeded t-SNE for the latent embedding instead of PCA"),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: the run folder)"),
    bits: str = typer.Option("32,8,6,4", "--bits", help="Latent bit widths for reconstruction error vs bits ('' for none)"),
) -> None:
    """Negative ELBO, reconstruction, KL, IW-NLL (K samples), SSIM, active units, KL per dim, MMD/Wasserstein
    for points; writes evaluation.json, the per-item IW-NLL (iw_nll_kK_FIRST-END.json) and figures, prints a table."""
    from vaelab.use.evaluate import evaluate as ev, table_rows

    if k < 1:  # before any work (and any progress line)
        from vaelab.core.errors import ArgumentError

        raise ArgumentError(f"--k must be >= 1 importance samples, got {k}")
    if seed < 0:
        from vaelab.core.errors import ArgumentError

        raise ArgumentError(f"--seed must be >= 0, got {seed}")
    r = open_reading(ctx, run)
    try:
        widths = tuple(int(b) for b in bits.split(",") if b.strip())
    except ValueError:
        raise typer.BadParameter(f"--bits takes integers separated by commas, e.g. 32,8,4; got {bits!r}") from None
    if any(b != 32 and not 1 <= b <= 16 for b in widths):
        raise typer.BadParameter(f"--bits: each width must be in 1..16 (or 32 for float), got {bits!r}")
    res = ev(r, _items(r, data, data_path, input, limit, offset), out or r.path, k=k, embedding="tsne" if tsne else "pca", seed=seed,
             bits=widths)
    _print_table(f"{r.path.name}: {res.metrics['items']} items of {res.metrics['data']}", table_rows(res.metrics))
    typer.echo(str(res.path))


OOD_DATA_HELP = ("NAME:PATH (e.g. mnist:../shared/data/mnist), NAME for datasets that need no path (digits), "
                 "or a YAML file with a data: section (any DataConfig field: name, path, options, limit); the test split is used")


def _ood_data(inside, outside, old_in, old_out) -> tuple[str | None, str, list[str]]:
    """--in-data/--out-data, accepting the old --in/--out (deprecation notes returned, printed once the command
    has worked, so an error stays one line); --out naming a folder is refused with the option the user most likely
    meant (every other command's --out is an output folder)."""
    notes = []
    for old, new, value in (("--in", "--in-data", old_in), ("--out", "--out-data", old_out)):
        if value is not None:
            if Path(value).is_dir() or (old == "--out" and ":" not in value and "/" in value):
                raise typer.BadParameter(f"{old} {value}: the OOD command's data options are --in-data/--out-data "
                                         "(NAME[:PATH]); its output folder is --out-dir")
            notes.append(f"note: {old} is deprecated for `vaelab ood`; use {new}")
    inside = inside if inside is not None else old_in
    outside = outside if outside is not None else old_out
    if outside is None:
        raise typer.BadParameter("give the out-of-distribution data with --out-data NAME[:PATH]")
    return inside, outside, notes


@app.command()
def ood(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run folder"),
    inside: Optional[str] = typer.Option(None, "--in-data", help="In-distribution data (default: the run's own). " + OOD_DATA_HELP),
    outside: Optional[str] = typer.Option(None, "--out-data", help="Out-of-distribution data (required). " + OOD_DATA_HELP),
    old_in: Optional[str] = typer.Option(None, "--in", hidden=True, help="Deprecated name of --in-data"),
    old_out: Optional[str] = typer.Option(None, "--out", hidden=True, help="Deprecated name of --out-data"),
    limit: int = typer.Option(500, "--limit", help="Items of each set (regret fine-tunes per item)"),
    scores: Optional[str] = typer.Option(None, "--scores", help="Comma list of OOD scores: nll, regret, complexity "
                                         "(default: every one that applies to the run's likelihood)"),
    k: int = typer.Option(1, "--k", help="Importance samples per NLL (1 = negative ELBO)"),
    regret_steps: Optional[int] = typer.Option(None, "--regret-steps", help="Adam steps on each input's encoder copy "
                                               "(default 100, as Xiao et al. 2020)"),
    regret_lr: Optional[float] = typer.Option(None, "--regret-lr", help="Adam learning rate of the re-fit (default 2e-4)"),
    regret_k: Optional[int] = typer.Option(None, "--regret-k", help="importance samples for the NLL before and after "
                                           "the re-fit (default 1000)"),
    regret_weight_decay: Optional[float] = typer.Option(None, "--regret-weight-decay", help="Adam's L2 weight decay "
                                                        "(default 5e-5)"),
    compressor: Optional[str] = typer.Option(None, "--compressor", help="lossless compressor for the input complexity: "
                                             "png, jpeg2000, zlib (default: png for images, zlib otherwise)"),
    seed: int = typer.Option(0, "--seed"),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Where to write (default RUN/ood)"),
) -> None:
    """Score in- vs out-of-distribution items (higher = more OOD) with NLL, likelihood regret (Xiao et al. 2020)
    and complexity-corrected NLL (Serra et al. 2020); prints AUROC, AUPRC and FPR at 95% TPR, writes
    ood_scores.csv, ood.json and ood_roc.png."""
    from vaelab.use.inputs import dataset_items
    from vaelab.use.ood import cli_options, ood as run_ood

    inside, outside, notes = _ood_data(inside, outside, old_in, old_out)
    r = open_reading(ctx, run)
    a = dataset_items(r, inside, limit=limit)
    b = dataset_items(r, outside, limit=limit)
    wanted = None if scores is None else tuple(s.strip() for s in scores.split(",") if s.strip())
    res = run_ood(r, a, b, out_dir or r.path / "ood", scores=wanted,
                  options=cli_options(regret_steps, regret_lr, regret_k, regret_weight_decay, compressor), k=k, seed=seed)
    _print_table(f"OOD: in {a.source} ({len(a)}) vs out {b.source} ({len(b)}); likelihood {res.notes['likelihood']}, "
                 f"NLL with K={k}",
                 [(s, f"AUROC {m['auroc']:.4f}  AUPRC {m['auprc']:.4f}  FPR@95%TPR {m['fpr95']:.4f}") for s, m in res.metrics.items()])
    for line in res.notes["regret"]:
        typer.echo(line)
    for line in res.notes["warnings"]:
        typer.echo(f"warning: {line}", err=True)
    for name, why in res.notes["skipped"].items():
        typer.echo(f"note: {name} skipped: {why}", err=True)
    for note in notes:
        typer.echo(note, err=True)
    typer.echo(f"{res.csv}\n{res.figure}")


@app.command()
def report(
    ctx: typer.Context,
    runs: List[Path] = typer.Argument(..., help="Run folder, or several to compare"),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML path (default RUN/report.html; for several runs ./comparison.html)"),
) -> None:
    """One self-contained HTML page that opens with no server. One run: config, metrics with units, every figure
    (run `vaelab evaluate RUN` and `vaelab ood` first to include theirs). Several runs: their curves overlaid,
    final metrics side by side, posterior collapse flagged."""
    from vaelab.use.report import build_comparison, build_report

    loaded = [open_reading(ctx, p) for p in runs]
    typer.echo(str(build_report(loaded[0], out) if len(loaded) == 1 else build_comparison(loaded, out)))
