"""Writing what the use commands produce: per-item images mirroring the inputs, grids, arrays; all atomic."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaelab.core.checkpoint import atomic_write_bytes
from vaelab.core.progress import advance
from vaelab.plots import is_image_shape, save_grid, to_display


def png_bytes(array: np.ndarray) -> bytes:
    """(H, W) or (H, W, C) floats in [0, 1] or uint8 -> PNG bytes."""
    from PIL import Image

    a = array if array.dtype == np.uint8 else np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, array: np.ndarray) -> None:
    data = png_bytes(array)
    atomic_write_bytes(Path(path), lambda f: f.write(data))


def write_npy(path: Path, array) -> None:
    a = array.detach().cpu().numpy() if isinstance(array, Tensor) else np.asarray(array)
    buf = io.BytesIO()
    np.save(buf, a)
    atomic_write_bytes(Path(path), lambda f: f.write(buf.getvalue()))


def write_npz(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: (v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)) for k, v in arrays.items()})
    atomic_write_bytes(Path(path), lambda f: f.write(buf.getvalue()))


def render_items(x: Tensor, value_range: tuple[float, float], data_name: str | None = None) -> np.ndarray | None:
    """Displayable (N, C, H, W) in [0, 1] for image batches, one rendered canvas for point sets, else None."""
    shape = tuple(x.shape[1:])
    if is_image_shape(shape):
        return to_display(x, value_range)
    return None


def render_point_cloud(points: Tensor) -> np.ndarray:
    """(N, 5) points (x, y, r, g, b in [0, 1]) -> (300, 300, 3) uint8 black canvas (seed 004's picture)."""
    from vaelab.data.pi import render_points

    return render_points(points.clamp(0, 1))


def write_item_images(out_dir: Path, names: list[str], x: Tensor, value_range: tuple[float, float]) -> list[Path]:
    """One PNG per item at out_dir/<name> (suffix .png), mirroring relative folder paths; [] for non-images."""
    if not is_image_shape(tuple(x.shape[1:])):
        return []
    imgs = to_display(x, value_range)  # (N, C, H, W)
    paths = []
    for name, img in zip(names, imgs):
        p = (Path(out_dir) / name).with_suffix(".png")
        p.parent.mkdir(parents=True, exist_ok=True)
        write_png(p, img.transpose(1, 2, 0))
        paths.append(p)
        advance()  # the open progress stage, if any
    return paths


def alternating_rows(a: Tensor, b: Tensor, nrow: int) -> Tensor:
    """Interleave rows of nrow items: a[0:n], b[0:n], a[n:2n], b[n:2n], ..."""
    rows = []
    for s in range(0, a.shape[0], nrow):
        rows += [a[s : s + nrow], b[s : s + nrow]]
    return torch.cat(rows)


def write_grid(path: Path, images: np.ndarray, nrow: int, *, title: str, row_labels: list[str] | None = None) -> None:
    """(N, C, H, W) in [0, 1] -> a titled grid figure about 660 px wide (small images are enlarged, pixels kept
    sharp), with a name per row when given (class names for label rows)."""
    save_grid(images, nrow, Path(path), title=title, row_labels=row_labels)


def class_names(spec, k: int) -> list[str]:
    """The names of labels 0..k-1: the data's class names when it has them (e.g. Fashion-MNIST's), else digits."""
    names = getattr(spec, "class_names", None)
    return [str(names[i]) if names is not None and i < len(names) else str(i) for i in range(k)]


def item_limit(total: int, limit: int | None) -> int:
    """How many per-item files to write: all with limit None (`--all`), else at most `limit`."""
    return total if limit is None else min(total, limit)


PER_ITEM_FILES = 64  # per-item files a use command writes unless asked for all (`--all`); the .npy has every item


__all__ = ["write_png", "write_npy", "write_npz", "png_bytes", "render_items", "render_point_cloud",
           "write_item_images", "alternating_rows", "write_grid", "class_names", "item_limit", "PER_ITEM_FILES"]
