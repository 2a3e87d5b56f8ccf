"""MNIST-style datasets from IDX files (`.gz` or raw); KMNIST also from its `.npz` files.

Files are discovered as `{train,t10k}-images-idx3-ubyte<suffix>` paired with
`{train,t10k}-labels-idx1-ubyte<suffix>` of the SAME suffix, so a cut-down image file
(`...first4742.gz`) never meets the full 60000-entry label file next to it.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from vaelab.data.base import (ARRAY_READ_ERRORS, DATASETS, ArrayData, ImageOptions, Source, rescale01, require_path,
                              scale_range)
from vaelab.core.errors import DataError

SPLITS = {"train": "train", "t10k": "test"}
IMAGES, LABELS = "-images-idx3-ubyte", "-labels-idx1-ubyte"
MAGIC = {1: 0x801, 3: 0x803}  # ubyte data, 1-D labels / 3-D images

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip file ({e}); download it again") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX file as a uint8 array; `ndim` 1 for labels, 3 for images."""
    path = Path(path)
    raw = _read_bytes(path)
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != MAGIC[ndim]:
        raise DataError(
            f"{path}: IDX magic number is {magic:#x}, expected {MAGIC[ndim]:#x} "
            f"({'labels' if ndim == 1 else 'images'}, unsigned bytes, {ndim}-D)"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    want = int(np.prod(dims))
    if len(raw) - head != want:
        raise DataError(f"{path}: header says {dims} = {want} bytes of data, file holds {len(raw) - head}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def find_idx_pairs(folder: Path) -> dict[str, tuple[Path, Path]]:
    """{"train"|"test": (images, labels)} for every IDX pair in `folder` (labels matched by suffix)."""
    pairs: dict[str, tuple[Path, Path]] = {}
    for prefix, split in SPLITS.items():
        found = []
        for img in sorted(folder.glob(f"{prefix}{IMAGES}*")):
            suffix = img.name[len(prefix + IMAGES) :]
            lab = folder / f"{prefix}{LABELS}{suffix}"
            if not lab.is_file():
                raise DataError(f"{img}: no label file with the same suffix; looked for {lab.name}")
            found.append((img, lab))
        # the same file raw and gzipped is not ambiguous: keep the raw one
        stems = {img.name.removesuffix(".gz") for img, _ in found}
        if len(stems) > 1:
            names = ", ".join(img.name for img, _ in found)
            raise DataError(f"{folder}: several {prefix} image files ({names}); keep one pair per split")
        if found:
            pairs[split] = min(found, key=lambda p: p[0].suffix == ".gz")
    return pairs


def load_idx_pair(images: Path, labels: Path) -> ArrayData:
    x = read_idx(images, 3)  # (N, H, W) uint8
    y = read_idx(labels, 1)  # (N,)
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels; they must pair one to one")
    if len(x) == 0:
        raise DataError(f"{images} holds 0 images; give a file with at least one image")
    if y.max() >= 10:
        i = int(np.argmax(y >= 10))
        raise DataError(f"{labels}: label {int(y[i])} at item {i} is outside the 10 classes 0..9 "
                        f"({int((y >= 10).sum())} such labels); the file is corrupt or of another dataset")
    return _to_array(x, y)


def _to_array(x: np.ndarray, y: np.ndarray) -> ArrayData:
    xt = torch.from_numpy(x.astype(np.float32)).div_(255.0).unsqueeze(1)  # (N, 1, H, W)
    return ArrayData(xt, torch.from_numpy(y.astype(np.int64)))


def _load_npz_arr(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "arr_0" not in z.files:
                raise DataError(f"{path}: no key 'arr_0' (keys present: {', '.join(z.files) or 'none'})")
            return z["arr_0"]
    except ARRAY_READ_ERRORS as e:
        raise DataError(f"{path}: cannot read .npz ({type(e).__name__}: {e})") from None


def find_kmnist_npz(folder: Path) -> dict[str, tuple[Path, Path]]:
    pairs = {}
    for split in ("train", "test"):
        img, lab = folder / f"kmnist-{split}-imgs.npz", folder / f"kmnist-{split}-labels.npz"
        if img.is_file() != lab.is_file():
            have, miss = (img, lab) if img.is_file() else (lab, img)
            raise DataError(f"{have}: found, but its partner {miss.name} is missing")
        if img.is_file():
            pairs[split] = (img, lab)
    return pairs


def load_idx_folder(name: str, path: Path | None, options: ImageOptions) -> Source:
    folder = require_path(path, name, "a folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] files")
    if not folder.is_dir():
        raise DataError(f"{folder}: expected a folder of IDX files for dataset {name!r}, got a file")
    search = [folder, folder / "raw"]
    splits: dict[str, ArrayData] = {}
    for where in search:
        pairs = find_idx_pairs(where) if where.is_dir() else {}
        if pairs:
            splits = {s: load_idx_pair(*p) for s, p in pairs.items()}
            break
        if name == "kmnist" and where.is_dir() and (npz := find_kmnist_npz(where)):
            for s, (img, lab) in npz.items():
                x, y = _load_npz_arr(img), _load_npz_arr(lab)
                if len(x) != len(y):
                    raise DataError(f"{img} holds {len(x)} images but {lab} holds {len(y)} labels")
                splits[s] = _to_array(x, y)
            break
    if not splits:
        looked = [f"{p}{IMAGES}[suffix] + {p}{LABELS}[same suffix]" for p in SPLITS]
        if name == "kmnist":
            looked.append("kmnist-{train,test}-{imgs,labels}.npz")
        raise DataError(f"{folder}: no {name} files found (also looked in raw/); looked for {'; '.join(looked)}")
    for s in splits.values():
        s.x = rescale01(s.x, options.scale)
    return Source(splits, scale_range(options.scale), 10, CLASS_NAMES[name])


def _register(name: str, title: str) -> None:
    def loader(path: Path | None, options: ImageOptions) -> Source:
        return load_idx_folder(name, path, options)

    loader.__name__ = f"load_{name}"
    DATASETS.register(
        name,
        loader,
        options=ImageOptions,
        doc=f"{title}: (1,28,28) images, 10 classes, native train/test from IDX files in a folder"
        + (" or kmnist-*.npz" if name == "kmnist" else ""),
    )


_register("mnist", "MNIST digits")
_register("fashion_mnist", "Fashion-MNIST")
_register("kmnist", "Kuzushiji-MNIST")
