"""A folder of images; class subfolders (sorted names) become labels. Seed 001's transform, without the random flip.

Transform: pad to a centred square (black) -> resize to int(1.25 * size) -> centre crop `size` -> [0,1] or [-1,1].
In memory by default; `stream: true` decodes on the fly in DataLoader worker processes.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
from pydantic import Field

from vaelab.data.base import (
    DATASETS,
    ArrayData,
    Batch,
    Options,
    Scale,
    Source,
    batch_order,
    rescale01,
    require_path,
    scale_range,
)
from vaelab.core.errors import DataError, VaelabWarning

EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")


class ImageFolderOptions(Options):
    size: int = Field(64, ge=1, description="side of the square output image")
    channels: Literal[1, 3] = Field(3, description="3 = RGB, 1 = greyscale")
    scale: Scale = Field("pm1", description="'pm1' -> [-1,1] (seed 001), '01' -> [0,1]")
    stream: bool = Field(False, description="decode images on the fly instead of holding them in memory")
    num_workers: int = Field(2, ge=0, description="worker processes when streaming")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")


def image_classes(folder: Path) -> list[str]:
    """Sorted names of the class subfolders that hold at least one image."""
    return sorted(d.name for d in Path(folder).iterdir() if d.is_dir() and any(_is_image(p) for p in d.rglob("*")))


def list_images(folder: str | Path) -> list[tuple[Path, int | None]]:
    """(path, label) for each image. With class subfolders, label = index in sorted names; else None."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    classes = image_classes(folder)
    if classes:
        return [(p, i) for i, c in enumerate(classes) for p in sorted((folder / c).rglob("*")) if _is_image(p)]
    return [(p, None) for p in sorted(folder.iterdir()) if _is_image(p)]


def _transform(img, size: int, channels: int, scale: Scale) -> torch.Tensor:
    from PIL import Image

    img = img.convert("RGB" if channels == 3 else "L")
    w, h = img.size
    side = max(w, h)
    if (w, h) != (side, side):  # centred square pad, zero fill
        canvas = Image.new(img.mode, (side, side))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    big = int(1.25 * size)
    img = img.resize((big, big), Image.BILINEAR)
    top = int(round((big - size) / 2.0))
    img = img.crop((top, top, top + size, top + size))
    a = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
    x = torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)  # (C, size, size)
    return rescale01(x, scale)


def load_image(path: str | Path, size: int = 64, channels: int = 3, scale: Scale = "pm1") -> torch.Tensor:
    """One image file -> (channels, size, size) float32 tensor, transformed as in training."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL only warns between 89M and 179M pixels: refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return _transform(img, size, channels, scale)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: refused, a possible decompression bomb ({e})") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def _readable(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # PIL raises many kinds for a bad file
        return False


@dataclass
class ImageFiles:
    """A list of image files decoded on demand (a torch Dataset: picklable for worker processes)."""

    paths: list[Path]
    labels: list[int] | None
    size: int
    channels: int
    scale: Scale
    num_workers: int = 0  # for the StreamSplit built from this list

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        x = load_image(self.paths[i], self.size, self.channels, self.scale)
        return x if self.labels is None else (x, self.labels[i])

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, self.size, self.size)

    def subset(self, index: torch.Tensor) -> "ImageFiles":
        idx = index.tolist()
        labels = None if self.labels is None else [self.labels[i] for i in idx]
        return ImageFiles([self.paths[i] for i in idx], labels, self.size, self.channels, self.scale, self.num_workers)

    def head(self, n: int) -> "ImageFiles":
        return self.subset(torch.arange(min(n, len(self))))

    def label_tensor(self) -> torch.Tensor | None:
        return None if self.labels is None else torch.tensor(self.labels, dtype=torch.long)

    def to_split(self) -> "StreamSplit":
        return StreamSplit(self, self.num_workers)


class StreamSplit:
    """A Split that decodes images in DataLoader workers; same `batches`/`take` as ArraySplit."""

    def __init__(self, files: ImageFiles, num_workers: int = 0):
        self.files, self.num_workers = files, num_workers

    @property
    def shape(self) -> tuple[int, ...]:
        return self.files.shape

    def __len__(self) -> int:
        return len(self.files)

    def labels(self) -> torch.Tensor | None:
        return self.files.label_tensor()

    def batches(
        self, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[Batch]:
        from torch.utils.data import DataLoader

        order = torch.cat(batch_order(len(self), batch_size, shuffle, generator, drop_last) or [torch.arange(0)])
        loader = DataLoader(
            self.files, batch_size=batch_size, sampler=order.tolist(), num_workers=self.num_workers, drop_last=drop_last
        )
        for b in loader:
            yield (b, None) if self.files.labels is None else (b[0], b[1])

    def take(self, n: int) -> Batch:
        head = self.files.head(n)
        if len(head) == 0:
            return torch.empty(0, *self.shape), (None if head.labels is None else torch.empty(0, dtype=torch.long))
        x = torch.stack([load_image(p, head.size, head.channels, head.scale) for p in head.paths])
        return x, head.label_tensor()

    def __repr__(self) -> str:
        return f"StreamSplit(n={len(self)}, shape={self.shape}, num_workers={self.num_workers})"


def load_image_folder(path: Path | None, options: ImageFolderOptions) -> Source:
    folder = require_path(path, "image_folder", "a folder of images (class subfolders become labels)")
    items = list_images(folder)
    if not items:
        raise DataError(f"{folder}: no images found (extensions {', '.join(EXTENSIONS)})")
    classes = image_classes(folder) or None
    size, ch, scale = options.size, options.channels, options.scale
    if options.stream:
        good = []
        for p, lab in items:
            if _readable(p):
                good.append((p, lab))
            else:
                warnings.warn(f"{p}: unreadable image, skipped", VaelabWarning, stacklevel=2)
        items = good
    else:
        xs, good = [], []
        for p, lab in items:
            try:
                xs.append(load_image(p, size, ch, scale))
                good.append((p, lab))
            except DataError as e:
                warnings.warn(f"{e}; skipped", VaelabWarning, stacklevel=2)
        items = good
    if not items:
        raise DataError(f"{folder}: none of the images could be read")
    labels = None if classes is None else [lab for _, lab in items]
    if options.stream:
        data = ImageFiles([p for p, _ in items], labels, size, ch, scale, options.num_workers)
    else:
        data = ArrayData(torch.stack(xs), None if labels is None else torch.tensor(labels, dtype=torch.long))
    return Source({"all": data}, scale_range(scale), None if classes is None else len(classes), classes)


DATASETS.register(
    "image_folder",
    load_image_folder,
    options=ImageFolderOptions,
    doc="a folder of png/jpg/gif/bmp/webp images; class subfolders become labels; pad-square, resize 1.25x, centre crop",
)
