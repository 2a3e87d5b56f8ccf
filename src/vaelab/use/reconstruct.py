"""Reconstructions of inputs (posterior mean through the decoder) and several models side by side."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from vaelab.core.errors import DataError
from vaelab.training.runs import Run
from vaelab.use.inputs import Items, check_shape, labels_for
from vaelab.core.progress import advance, stage
from vaelab.use.outputs import (PER_ITEM_FILES, alternating_rows, item_limit, render_items, write_grid,
                                write_item_images, write_npy)


@torch.no_grad()
def reconstruct_tensor(run: Run, x: Tensor, y: Tensor | None = None, *, batch_size: int = 256) -> Tensor:
    """decode(encode(x).mean) -> (N, *shape), deterministic."""
    model = run.model
    check_shape(run, x, "inputs")
    c_all = model.condition_vector(y) if model.conditional else None
    out = []
    for s in range(0, x.shape[0], batch_size):
        c = None if c_all is None else c_all[s : s + batch_size]
        out.append(model(x[s : s + batch_size], c, sample=False).x_hat)
        advance(out[-1].shape[0])  # the open progress stage, if any
    return torch.cat(out)


@dataclass
class ReconstructResult:
    out_dir: Path
    count: int
    grid: Path | None
    files: list[Path]
    skipped: list[str]
    mse: float
    array: Path | None = None  # reconstructions.npy: every item, whatever the per-item file limit


def reconstruct(run: Run, items: Items, out_dir: Path, *, label: int | None = None, grid_items: int = 32, nrow: int = 8,
                per_item: int | None = PER_ITEM_FILES) -> ReconstructResult:
    """Write reconstructions.npy (every item), a grid PNG (originals and reconstructions in alternating rows) and
    one PNG per input mirroring the names, for the first `per_item` inputs (None: all of them)."""
    y = labels_for(run, items, label)
    with stage("reconstruct", len(items)):
        recon = reconstruct_tensor(run, items.x, y)
    mse = float((recon - items.x).pow(2).mean())  # in the model's units (standardised ones for standardised runs)
    x, vr = items.x, items.value_range
    spec = run.data_spec
    if spec.normalization is not None:  # outputs in the data's own units
        x, recon, vr = spec.to_data_units(x), spec.to_data_units(recon), spec.raw_range
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = item_limit(len(items), per_item)
    with stage("reconstruct: per-item images", keep, unit="files"):
        files = write_item_images(out_dir, items.names[:keep], recon[:keep], vr)
    array = out_dir / "reconstructions.npy"
    write_npy(array, recon)
    grid = None
    shown = render_items(alternating_rows(x[:grid_items], recon[:grid_items], nrow), vr)
    if shown is not None:
        grid = out_dir / "reconstruction_grid.png"
        rows = -(-min(grid_items, len(items)) // nrow)
        write_grid(grid, shown, nrow, title=f"{run.path.name}: originals / reconstructions ({items.source})",
                   row_labels=["original", "reconstruction"] * rows)
    return ReconstructResult(out_dir, len(items), grid, files, items.skipped, mse, array)


def compare(runs: list[Run], items: Items, out: Path, *, n: int = 8) -> Path:
    """One figure: the originals in the first row, then each model's reconstructions of the same inputs."""
    from vaelab.plots import save_grid

    if len(runs) < 1:
        raise DataError("compare needs at least one run folder")
    datas = {run.path.name: run.data_spec.name or run.config.data.name for run in runs}
    if len(set(datas.values())) > 1:
        import warnings

        from vaelab.core.errors import VaelabWarning

        warnings.warn(VaelabWarning("compare: the models were trained on different data ("
                                    + ", ".join(f"{k}: {v}" for k, v in datas.items())
                                    + f"); all reconstruct the same {items.source} inputs"), stacklevel=2)
    x = items.x[:n]
    rows, labels = [x], ["originals"]
    for run in runs:
        sub = Items(x, None if items.y is None else items.y[:n], items.names[:n], items.value_range, items.source)
        rows.append(reconstruct_tensor(run, x, labels_for(run, sub)))
        labels.append(run.path.name + (" (cond.)" if run.model.conditional else ""))
    shown = render_items(torch.cat(rows), items.value_range)
    if shown is None:
        raise DataError(f"compare draws images; {items.source} items have shape {tuple(x.shape[1:])}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(shown, x.shape[0], out, title=f"{items.source}: originals, then each model's reconstructions",
              row_labels=labels)
    return out


__all__ = ["reconstruct_tensor", "reconstruct", "compare", "ReconstructResult"]
