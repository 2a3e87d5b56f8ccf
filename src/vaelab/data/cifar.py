"""CIFAR-10 from its python pickle batches, unpickled with a class allow-list so a file cannot run code."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.base import DATASETS, ArrayData, ImageOptions, Source, rescale01, require_path, scale_range
from vaelab.core.errors import DataError

TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = ["test_batch"]
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# everything a pickled dict of numpy arrays needs, and nothing that can run code
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes written by Python 3 under protocol 2
}


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")


def safe_load(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{path}: not a plain CIFAR pickle ({e})") from None


def _get(d: Any, key: str) -> Any:
    if not isinstance(d, dict):
        raise DataError(f"expected a pickled dict, got {type(d).__name__}")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"missing key {key!r}")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = safe_load(path)
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    try:
        x = np.asarray(_get(d, "data"), dtype=np.uint8)
        y = np.asarray(_get(d, "labels"), dtype=np.int64)
    except DataError as e:
        raise DataError(f"{path}: {e} (keys present: {sorted(map(str, d))})") from None
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise DataError(f"{path}: data {x.shape} / labels {y.shape}; expected (N, 3072) and (N,)")
    return x.reshape(-1, 3, 32, 32), y  # rows are R plane, G plane, B plane


def load_cifar10(path: Path | None, options: ImageOptions) -> Source:
    folder = require_path(path, "cifar10", "the cifar-10-batches-py folder")
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    splits = {}
    for split, names in (("train", TRAIN), ("test", TEST)):
        files = [folder / n for n in names if (folder / n).is_file()]
        if not files:
            continue
        parts = [read_batch(f) for f in files]
        x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255.0)  # (N, 3, 32, 32)
        y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        splits[split] = ArrayData(rescale01(x, options.scale), y)
    if not splits:
        raise DataError(f"{folder}: no CIFAR-10 batches; looked for {', '.join(TRAIN + TEST)}")
    names = CLASS_NAMES
    if (meta := folder / "batches.meta").is_file():
        try:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in _get(safe_load(meta), "label_names")]
        except DataError:
            pass
    return Source(splits, scale_range(options.scale), 10, names)


DATASETS.register(
    "cifar10", load_cifar10, options=ImageOptions, doc="CIFAR-10 python batches: (3,32,32), 10 classes, native train/test"
)
