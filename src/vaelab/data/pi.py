"""The colored-pi point cloud (seed 004): 5000 points [x/300, y/300, r/255, g/255, b/255], one point per sample.

`rgb = image[xs, ys]`: xs index ROWS (the other way round, most points land on black pixels).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from vaelab.data.base import ARRAY_READ_ERRORS, DATASETS, ArrayData, Options, Source, require_path
from vaelab.core.errors import DataError

SIDE = 300  # the seed image is 300 x 300; coordinates are divided by this


class PiOptions(Options):
    image: str = Field("sparse_pi_colored.jpg", description="colour image inside the folder")


def _npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing (colored_pi needs pi_xs.npy, pi_ys.npy and the colour image)")
    try:
        a = np.load(path, allow_pickle=False)
    except ARRAY_READ_ERRORS as e:
        raise DataError(f"{path}: cannot read .npy ({type(e).__name__}: {e})") from None
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{path}: expected a 1-D integer array, got {a.dtype} {a.shape}")
    return a


def load_pi(folder: str | Path, image: str = "sparse_pi_colored.jpg") -> np.ndarray:
    """(N, 5) float32 points in [0,1] from pi_xs.npy, pi_ys.npy and the colour image in `folder`."""
    from PIL import Image

    folder = Path(folder)
    xs, ys = _npy(folder / "pi_xs.npy"), _npy(folder / "pi_ys.npy")
    if len(xs) != len(ys):
        raise DataError(f"{folder}: pi_xs.npy has {len(xs)} entries, pi_ys.npy {len(ys)}")
    img_path = folder / image
    try:
        with Image.open(img_path) as im:
            img = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
    except (OSError, ValueError) as e:
        raise DataError(f"{img_path}: cannot read the colour image ({e})") from None
    h, w = img.shape[:2]
    if xs.min() < 0 or ys.min() < 0 or xs.max() >= h or ys.max() >= w:
        raise DataError(f"{folder}: point indices exceed the {h}x{w} image (xs index rows, ys columns)")
    rgb = img[xs, ys].astype(np.float32) / 255.0  # (N, 3)
    xy = np.stack([xs, ys], axis=1).astype(np.float32) / SIDE  # (N, 2)
    return np.concatenate([xy, rgb], axis=1)


def render_points(points, size: int = SIDE) -> np.ndarray:
    """(N, 5) points -> (size, size, 3) uint8 black canvas with each point's colour at (row=x*size, col=y*size).

    Positions and colours are rounded, not truncated as in the seed: int(57/300*300) is 56 in float32.
    """
    p = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if p.ndim != 2 or p.shape[1] != 5:
        raise DataError(f"points must be (N, 5), got {p.shape}")
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    rows = np.clip(np.rint(p[:, 0] * size), 0, size - 1).astype(np.int64)
    cols = np.clip(np.rint(p[:, 1] * size), 0, size - 1).astype(np.int64)
    canvas[rows, cols] = np.clip(np.rint(p[:, 2:5] * 255.0), 0, 255).astype(np.uint8)
    return canvas


def load_colored_pi(path: Path | None, options: PiOptions) -> Source:
    folder = require_path(path, "colored_pi", "a folder with pi_xs.npy, pi_ys.npy and sparse_pi_colored.jpg")
    x = torch.from_numpy(load_pi(folder, options.image))
    return Source({"all": ArrayData(x)}, (0.0, 1.0), None, None)


DATASETS.register(
    "colored_pi",
    load_colored_pi,
    options=PiOptions,
    doc="seed 004's colored pi: each point [x/300, y/300, r, g, b] is one (5,) sample in [0,1]",
)
