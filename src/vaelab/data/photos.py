"""Real photographs without a download: scikit-learn's two bundled sample photos (china.jpg and flower.jpg,
427x640 each), cut into small patches for training or enlarged into one big image for tiled encoding."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vaelab.core.errors import ConfigError


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's sample photos as (427, 640, 3) uint8 arrays (they ship inside the package)."""
    from sklearn.datasets import load_sample_images

    return [np.asarray(img) for img in load_sample_images().images]


def make_photo_patches(folder: str | Path, *, size: int = 40, scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0),
                       stride: int | None = None) -> Path:
    """Write square `size`-pixel patches of the sample photos as PNGs under folder/<photo>/; returns the folder.

    Each photo is shrunk by every factor in `scales` (more content per patch) and cut on a grid with `stride`
    (default `size`: patches do not overlap within a scale). 40 px patches pass the image loader's
    resize-to-1.25x-then-crop step at `size: 32` without resampling (40 = 1.25 x 32): a pure centre crop.
    """
    from PIL import Image

    if size < 8:
        raise ConfigError(f"size must be >= 8 pixels, got {size}")
    if any(s < 1 for s in scales):
        raise ConfigError(f"scales must be >= 1 (shrink factors), got {scales}")
    step = stride or size
    if step < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    folder = Path(folder)
    for name, photo in zip(("china", "flower"), sample_photos()):
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(photo)
        for k, scale in enumerate(scales):
            w, h = round(img.width / scale), round(img.height / scale)
            small = img.resize((w, h), Image.LANCZOS) if scale != 1 else img
            for top in range(0, h - size + 1, step):
                for left in range(0, w - size + 1, step):
                    small.crop((left, top, left + size, top + size)).save(sub / f"s{k}-{top:04d}-{left:04d}.png")
    return folder


def large_photo(side: int = 2048, *, which: int = 0) -> np.ndarray:
    """One sample photo centre-cropped to a square and enlarged (bicubic) to (side, side, 3) uint8."""
    from PIL import Image

    photo = sample_photos()[which]
    h, w = photo.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = Image.fromarray(photo[top : top + s, left : left + s]).resize((side, side), Image.BICUBIC)
    return np.asarray(img)


__all__ = ["sample_photos", "make_photo_patches", "large_photo"]
