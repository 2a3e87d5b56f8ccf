"""Draws from the prior (per label for conditional models) and latent interpolation between two inputs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaelab.core.errors import ArgumentError, DataError
from vaelab.plots import is_image_shape, save_grid, to_display
from vaelab.training.runs import Run
from vaelab.use.inputs import check_label, load_items, Items
from vaelab.use.outputs import class_names, render_point_cloud, write_grid, write_npy, write_png


MAX_SAMPLES = 100_000  # per call (per label with all_labels): the samples and their grid are held in memory


@dataclass
class SampleResult:
    array: Path
    figure: Path | None
    shape: tuple[int, ...]


def sample_tensor(run: Run, n: int, *, label: int | None = None, all_labels: bool = False, temperature: float = 1.0,
                  seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """(samples, labels): n draws, or n per label with all_labels (rows grouped by label)."""
    model = run.model
    if n < 1 or n > MAX_SAMPLES:
        raise ArgumentError(f"-n must be in 1..{MAX_SAMPLES:,}, got {n} (for more, sample again with another --seed)")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ArgumentError(f"--temperature must be a finite number > 0 (1 samples the prior), got {temperature}")
    if label is not None and all_labels:
        raise DataError("give --label K or --all-labels, not both")
    g = torch.Generator().manual_seed(seed)
    labels = None
    if label is not None:
        check_label(run, label)
        labels = torch.full((n,), label, dtype=torch.long)
    elif model.conditional:
        labels = model.condition.all_labels(n)  # a conditional model needs a label: default to every label
        if labels is None:
            raise DataError(f"the model of {run.path} takes condition vectors; sampling needs labels, which it has none of")
    elif all_labels:
        raise DataError(f"--all-labels: the model of {run.path} is unconditional; drop it")
    c = model.condition_vector(labels) if labels is not None else None
    with torch.no_grad():
        x = model.sample(len(labels) if labels is not None else n, c, temperature=temperature, generator=g)
    return x, labels


def sample(run: Run, n: int, out_dir: Path, *, label: int | None = None, all_labels: bool = False,
           temperature: float = 1.0, seed: int = 0) -> SampleResult:
    """samples.npy plus samples.png: a grid (one row per label for conditional models) or, for 5-D colored-pi
    points, the points on seed 004's black 300x300 canvas."""
    x, labels = sample_tensor(run, n, label=label, all_labels=all_labels, temperature=temperature, seed=seed)
    x = run.data_spec.to_data_units(x)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arr = out_dir / "samples.npy"
    write_npy(arr, x)
    if labels is not None:
        write_npy(out_dir / "labels.npy", labels)
    vr = run.data_spec.raw_range
    shape = tuple(x.shape[1:])
    fig = out_dir / "samples.png"
    if is_image_shape(shape):
        if labels is not None and label is None:
            k = run.model.condition_width
            save_grid(to_display(x, vr), n, fig, title=f"{run.path.name}: samples, one row per class (T={temperature:g})",
                      row_labels=class_names(run.data_spec, k))
        else:
            nrow = min(n, max(1, int(np.ceil(np.sqrt(n)))))
            name = None if label is None else class_names(run.data_spec, label + 1)[label]
            what = "" if label is None else f", class {label}" + ("" if name == str(label) else f" ({name})")
            write_grid(fig, to_display(x, vr), nrow, title=f"{run.path.name}: {n} samples{what} (T={temperature:g})")
    elif shape == (5,):  # colored pi points
        write_png(fig, render_point_cloud(x))
    else:
        fig = None
    return SampleResult(arr, fig, shape)


def _endpoint(run: Run, spec: str, items_cache: dict) -> tuple[Tensor, Tensor | None]:
    """An item index of the run's test data, or an image path."""
    if spec.lstrip("-").isdigit():
        if "items" not in items_cache:
            items_cache["items"] = load_items(run)
        items: Items = items_cache["items"]
        i = int(spec)
        if not 0 <= i < len(items):
            raise DataError(f"item index {i} is out of range: the data has {len(items)} test items (0..{len(items) - 1})")
        return items.x[i : i + 1], None if items.y is None else items.y[i : i + 1]
    p = Path(spec)
    if not p.is_file():
        raise DataError(f"{spec}: neither an item index nor an image file")
    from vaelab.data.images import load_image
    from vaelab.use.inputs import _scale

    shape = tuple(run.model.input_shape)
    if len(shape) != 3:
        raise DataError(f"{spec}: the model takes {shape}, not images; give item indices")
    x = load_image(p, size=shape[1], channels=shape[0], scale=_scale(run.data_spec.raw_range)).unsqueeze(0)
    return run.data_spec.to_model_units(x), None


def interpolate(run: Run, a: str, b: str, out_dir: Path, *, steps: int = 8, label: int | None = None) -> Path:
    """Decode evenly spaced points on the line between the posterior means of A and B (scaled latent units);
    writes interpolation.npy and interpolation.png (A's and B's originals at the ends)."""
    from vaelab.use.codec import decode_tensor, encode_tensor

    if not 2 <= steps <= 10_000:
        raise ArgumentError(f"--steps must be in 2..10,000 (points on the line, both ends included), got {steps}")
    cache: dict = {}
    xa, ya = _endpoint(run, a, cache)
    xb, yb = _endpoint(run, b, cache)
    model = run.model
    if model.conditional:
        if label is not None:
            check_label(run, label)
            ya = yb = torch.tensor([label])
        if ya is None or yb is None:
            raise DataError(f"the model of {run.path} is conditional: give --label K for image-file endpoints")
    elif label is not None:
        check_label(run, label)
    _, za, _ = encode_tensor(run, xa, ya)
    _, zb, _ = encode_tensor(run, xb, yb)
    t = torch.linspace(0, 1, steps).view(steps, *([1] * (za.dim() - 1)))
    z = (1 - t) * za + t * zb
    y = None
    if model.conditional:
        y = ya.repeat(steps) if label is not None or bool((ya == yb).all()) else torch.where(t.view(-1) < 0.5, ya, yb)
    x = torch.cat([xa, decode_tensor(run, z, y), xb])
    x = run.data_spec.to_data_units(x)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_npy(out_dir / "interpolation.npy", x[1:-1])
    vr = run.data_spec.raw_range
    if is_image_shape(tuple(x.shape[1:])):
        write_grid(out_dir / "interpolation.png", to_display(x, vr), steps + 2,
                   title=f"{run.path.name}: {a} -> {b}, {steps} steps (originals at both ends)")
    return out_dir


__all__ = ["sample_tensor", "sample", "interpolate", "SampleResult"]
