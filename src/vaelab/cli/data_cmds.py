"""`vaelab data describe | list | make-shapes | make-photo-patches | make-photo | make-amass`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from vaelab.cli.app import app

data_app = typer.Typer(help="Inspect datasets and write the synthetic stand-ins the recipes use.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("describe")
def describe(
    target: str = typer.Argument(..., help="a dataset NAME (see `vaelab data list`) or a CONFIG .yaml"),
    path: Optional[Path] = typer.Argument(None, help="with NAME: the file or folder it reads (data.path)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="with CONFIG: override dotted.key=value"),
    option: Optional[List[str]] = typer.Option(None, "--option", help="with NAME: a dataset option key=value, e.g. size=32"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """Size per split, shape, dtype, value range and label counts."""
    from vaelab.data.report import describe_dataset, format_description

    info = describe_dataset(target, path, overrides=list(set_ or []), options=list(option or []))
    typer.echo(json.dumps(info, indent=2) if as_json else format_description(info))


@data_app.command("list")
def list_datasets() -> None:
    """Every dataset name usable as data.name, with what it reads."""
    from vaelab.data import DATASETS

    for e in DATASETS.entries():
        typer.echo(f"{e.name:15s} {e.meta.get('doc', '')}")


@data_app.command("make-shapes")
def make_shapes(
    folder: Path = typer.Argument(Path("runs/synthetic/shapes"), help="folder to write (class subfolders inside)"),
    per_class: int = typer.Option(200, help="images per class"),
    width: int = typer.Option(48, help="image width in pixels"),
    height: int = typer.Option(40, help="image height in pixels (not square, to exercise the pad-to-square step)"),
    seed: int = typer.Option(0, help="random seed; the same seed writes the same images"),
) -> None:
    """Write a deterministic folder of coloured shapes (circle/square/triangle subfolders) as PNGs."""
    from vaelab.data.synthetic import SHAPES, make_shapes as write

    out = write(folder, per_class=per_class, width=width, height=height, seed=seed)
    typer.echo(f"{out}  ({per_class * len(SHAPES)} images in {len(SHAPES)} classes)")


@data_app.command("make-photo-patches")
def make_photo_patches(
    folder: Path = typer.Argument(Path("runs/synthetic/photo-patches"), help="folder to write (china/ and flower/ inside)"),
    size: int = typer.Option(40, help="patch side in pixels (40 = 1.25 x 32: the 32-px loader only centre-crops it)"),
) -> None:
    """Cut scikit-learn's two bundled sample photos (shrunk 1x, 1.5x, 2x, 3x) into non-overlapping square PNG patches."""
    from vaelab.data.photos import make_photo_patches as write

    out = write(folder, size=size)
    typer.echo(f"{out}  ({sum(1 for _ in out.rglob('*.png'))} patches)")


@data_app.command("make-photo")
def make_photo(
    path: Path = typer.Argument(Path("runs/synthetic/photo-2048.png"), help="PNG file to write"),
    size: int = typer.Option(2048, help="side of the square image"),
    which: int = typer.Option(0, help="0 = china.jpg, 1 = flower.jpg"),
) -> None:
    """One of scikit-learn's sample photos, centre-cropped square and enlarged to SIZE x SIZE (for tiled encoding)."""
    from PIL import Image

    from vaelab.data.photos import large_photo

    if size < 8 or which not in (0, 1):
        raise typer.BadParameter("--size must be >= 8 and --which 0 or 1")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(large_photo(size, which=which)).save(path)
    typer.echo(str(path))


@data_app.command("make-amass")
def make_amass(
    path: Path = typer.Argument(Path("runs/synthetic/amass/synthetic_run_poses.npz"), help=".npz file to write"),
    frames: int = typer.Option(326, help="number of frames T (the seed's clip has 326)"),
    seed: int = typer.Option(0, help="random seed; the same seed writes the same arrays"),
    amplitude: float = typer.Option(1.0, help="motion around the rest pose: 1 = a lively clip, 0.03 = a low-motion "
                                    "one (quaternions vary ~35x less, like a real standing clip)"),
) -> None:
    """Write a synthetic AMASS clip (poses (T,156), trans, betas(16), mocap_framerate, gender, dmpls)."""
    from vaelab.data.synthetic import make_amass as write

    typer.echo(str(write(path, frames=frames, seed=seed, amplitude=amplitude)))
