"""Figures of a run: loss curves, reconstruction grid, samples. Headless (Agg), written atomically."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vaelab.core.checkpoint import atomic_write_bytes


def new_figure(nrows: int = 1, ncols: int = 1, **subplots_kw: Any):
    """(figure, axes) drawn off-screen without pyplot: no global backend switch, nothing left open."""
    from matplotlib.figure import Figure

    figsize = subplots_kw.pop("figsize", None)
    layout = subplots_kw.pop("layout", None)  # "constrained": titles and labels never overlap
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **subplots_kw)


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(Path(path), lambda f: f.write(buf.getvalue()))


def is_image_shape(shape: Sequence[int]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3)


def to_display(x: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """(N, C, H, W) in value_range -> float array in [0, 1]."""
    lo, hi = value_range
    x = (x.detach().float().cpu() - lo) / max(hi - lo, 1e-12)
    return x.clamp(0, 1).numpy()


def make_grid(images: np.ndarray, nrow: int, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (rows*(H+pad)+pad, nrow*(W+pad)+pad, C) with a white border."""
    n, c, h, w = images.shape
    rows = max(1, math.ceil(n / nrow))
    grid = np.ones((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i].transpose(1, 2, 0)
    return grid


def save_grid(images: np.ndarray, nrow: int, path: Path, *, title: str | None = None, row_labels: Sequence[str] | None = None) -> None:
    grid = make_grid(images, nrow)
    h, w = grid.shape[:2]
    scale = 6.0 / max(w, 1)
    fig, ax = new_figure(figsize=(max(2.0, w * scale * 1.15), max(1.5, h * scale)))
    ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        cell = images.shape[2] + 1
        ax.set_yticks([1 + cell * i + cell / 2 for i in range(len(row_labels))], list(row_labels))
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title)
    save_figure(fig, path)


CURVE_TERMS = (("loss", "total loss"), ("recon", "reconstruction"), ("kl", "KL"))


def integer_ticks(axis, values: Sequence[int]) -> None:
    """Whole-number ticks on a counting axis (epochs, generations, latent dimensions): 1 and 2, not 1.0, 1.2, ...;
    a lone value gets its own tick (a locator would label the +-0.05 margin around it)."""
    from matplotlib.ticker import FixedLocator, MaxNLocator

    distinct = sorted(set(int(v) for v in values))
    if len(distinct) <= 1:
        axis.set_major_locator(FixedLocator(distinct))
    else:
        axis.set_major_locator(MaxNLocator(integer=True, nbins=min(10, len(distinct))))


def _epoch_axis(ax, epochs: Sequence[int]) -> None:
    integer_ticks(ax.xaxis, epochs)
    ax.set_xlabel("epoch")


def _scale_y(ax, values: Sequence[float]) -> str:
    """Log scale when the curve spans more than 20x (a first epoch far above the rest flattens a linear axis)."""
    v = [y for y in values if y is not None and math.isfinite(y)]
    if len(v) >= 2 and min(v) > 0 and max(v) / min(v) > 20:
        ax.set_yscale("log")
        return " (log scale)"
    return ""


def panel_unit(unit: Any, key: str) -> str | None:
    """The unit of one loss panel ("loss", "recon", "kl"): `unit` is one string for all, a {key: unit} mapping, or
    an object with total/recon/kl (vaelab.use.units.LossUnits); a long weighted-total unit is shortened (tables
    carry it in full)."""
    if unit is None or isinstance(unit, str):
        return unit
    u = unit.get(key) if isinstance(unit, dict) else getattr(unit, "total" if key == "loss" else key, None)
    if key == "loss" and u and len(u) > 30:
        return "weighted sum of the terms"
    return u


def loss_curves(history: list[dict[str, Any]], path: Path, title: str = "loss", unit: Any = None) -> None:
    """Total, reconstruction and KL per epoch, train solid and validation dashed; `unit` labels the y axes (see
    `panel_unit`)."""
    epochs = [h["epoch"] for h in history]
    fig, axes = new_figure(1, 3, figsize=(12, 3.6), layout="constrained")
    for ax, (key, label) in zip(axes, CURVE_TERMS):
        plotted: list[float] = []
        for split, style in (("train", "-"), ("val", "--")):
            ys = [h.get(f"{split}_{key}") for h in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, style, marker="." if len(epochs) < 30 else None, label=split)
                plotted += [y for y in ys if y is not None]
        ax.set_title(label + _scale_y(ax, plotted), fontsize=10)
        term_unit = panel_unit(unit, key)
        ax.set_ylabel(f"{label} ({term_unit})" if term_unit else label)
        _epoch_axis(ax, epochs)
        if plotted:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    save_figure(fig, path)


def overlay_curves(histories: dict[str, list[dict[str, Any]]], key: str, path: Path, *, title: str, unit: str) -> None:
    """One curve per run (label -> history) of one metrics key, e.g. val_loss; every run in the same unit."""
    fig, ax = new_figure(figsize=(7, 4), layout="constrained")
    values: list[float] = []
    all_epochs: list[int] = []
    for label, history in histories.items():
        pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
            values += ys
            all_epochs += xs
    ax.set_title(title + _scale_y(ax, values))
    ax.set_ylabel(f"{key} ({unit})")
    _epoch_axis(ax, sorted(set(all_epochs)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def scatter_points(real: np.ndarray, fake: np.ndarray, path: Path, title: str) -> None:
    """First two dimensions of real and generated vectors side by side."""
    fig, axes = new_figure(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    for ax, data, name in ((axes[0], real, "data"), (axes[1], fake, "generated")):
        ax.scatter(data[:, 0], data[:, 1] if data.shape[1] > 1 else np.zeros(len(data)), s=3, alpha=0.6)
        ax.set_title(name)
    fig.suptitle(title)
    save_figure(fig, path)


@torch.no_grad()
def write_run_figures(run_dir: Path, model, bundle, history: list[dict[str, Any]], seed: int, *,
                      unit: Any = None) -> None:
    """loss_curve.png, reconstructions.png (originals and reconstructions in alternating rows) and samples.png;
    `unit`: the loss terms' unit, on the loss curves' y axes."""
    run_dir = Path(run_dir)
    if history:
        loss_curves(history, run_dir / "loss_curve.png", title=f"{run_dir.name}: loss per epoch", unit=unit)
    model.eval()
    device = next(model.parameters()).device
    split = bundle.val if bundle.val is not None and len(bundle.val) else bundle.train
    gen = torch.Generator().manual_seed(seed)
    shape, vr = tuple(bundle.shape), tuple(bundle.value_range)
    if is_image_shape(shape):
        x, y = split.take(min(32, len(split)))
        c = model.condition_vector(y.to(device) if y is not None else None) if model.conditional else None
        recon = model(x.to(device), c, sample=False).x_hat
        nrow = 8
        rows = []
        for start in range(0, x.shape[0], nrow):
            rows += [x[start:start + nrow], recon[start:start + nrow].cpu()]
        save_grid(to_display(torch.cat(rows), vr), nrow, run_dir / "reconstructions.png", title="originals / reconstructions")
        labels = model.condition.all_labels(8) if model.conditional else None
        if labels is not None:
            k = model.condition_width
            samples = model.sample(len(labels), model.condition_vector(labels.to(device)), generator=gen)
            names = getattr(bundle, "class_names", None) or []
            save_grid(to_display(samples, vr), 8, run_dir / "samples.png", title="samples, one row per class",
                      row_labels=[str(names[i]) if i < len(names) else str(i) for i in range(k)])
        elif not model.conditional:
            samples = model.sample(64, generator=gen)
            save_grid(to_display(samples, vr), 8, run_dir / "samples.png", title="samples from the prior")
    elif len(shape) == 1 and not model.conditional:
        x, _ = split.take(min(2000, len(split)))
        fake = model.sample(x.shape[0], generator=gen).cpu().numpy()
        scatter_points(x.numpy(), fake, run_dir / "samples.png", "first two dimensions")
    model.train()
