"""The data contract: in-memory arrays, a loader's Source, the Split interface, the DATASETS registry."""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Protocol, runtime_checkable

import torch
from pydantic import BaseModel, Field

from vaelab.core.errors import ConfigError, DataError
from vaelab.core.vocab import DATASETS, Options, dataset_options  # noqa: F401  (re-exported)
from vaelab.data.spec import DataSpec, data_spec

Batch = tuple[torch.Tensor, torch.Tensor | None]

# What np.load raises on a truncated, corrupt or foreign .npy/.npz (BadZipFile: not a zip at all)
ARRAY_READ_ERRORS = (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile)
Scale = Literal["01", "pm1"]


class ImageOptions(Options):
    scale: Scale = Field("01", description="pixel range: '01' -> [0,1], 'pm1' -> [-1,1]")


def scale_range(scale: Scale) -> tuple[float, float]:
    return (0.0, 1.0) if scale == "01" else (-1.0, 1.0)


def rescale01(x: torch.Tensor, scale: Scale) -> torch.Tensor:
    """Map data in [0,1] to the range `scale` names."""
    return x if scale == "01" else x.mul(2.0).sub(1.0)


@dataclass
class ArrayData:
    """Samples held in memory. x: (N, *shape) float32; y: (N,) int64, (N, K) float32 or None."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32:
            self.x = self.x.float()
        if self.y is not None:
            if len(self.y) != len(self.x):
                raise DataError(f"{len(self.x)} samples but {len(self.y)} labels")
            if self.y.is_floating_point():
                self.y = self.y.float()
            else:
                self.y = self.y.long()

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: torch.Tensor) -> "ArrayData":
        return ArrayData(self.x[index], None if self.y is None else self.y[index])

    def head(self, n: int) -> "ArrayData":
        return ArrayData(self.x[:n], None if self.y is None else self.y[:n])

    def labels(self) -> torch.Tensor | None:
        return self.y

    def to_split(self) -> "ArraySplit":
        return ArraySplit(self)


@runtime_checkable
class Split(Protocol):
    """What training and evaluation iterate over; in memory or streamed."""

    def __len__(self) -> int: ...

    def batches(
        self, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[Batch]: ...

    def take(self, n: int) -> Batch: ...


def batch_order(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None, drop_last: bool):
    """Index chunks for one epoch: a randperm (or arange) cut into batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


class ArraySplit:
    """A Split over in-memory tensors: each batch is one index gather, no per-item Python."""

    def __init__(self, data: ArrayData):
        self.data = data

    @property
    def x(self) -> torch.Tensor:
        return self.data.x

    @property
    def y(self) -> torch.Tensor | None:
        return self.data.y

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __len__(self) -> int:
        return len(self.data)

    def labels(self) -> torch.Tensor | None:
        return self.data.y

    def batches(
        self, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[Batch]:
        x, y = self.data.x, self.data.y
        for idx in batch_order(len(x), batch_size, shuffle, generator, drop_last):
            yield x[idx], (None if y is None else y[idx])

    def take(self, n: int) -> Batch:
        y = self.data.y
        return self.data.x[:n], (None if y is None else y[:n])

    def __repr__(self) -> str:
        return f"ArraySplit(n={len(self)}, shape={self.shape})"


@dataclass
class Source:
    """What a loader returns. Split keys: "train"/"test" (native) or "all"."""

    splits: dict[str, Any]  # ArrayData, or another object with __len__/subset/head/to_split (streamed images)
    value_range: tuple[float, float]
    num_classes: int | None = None
    class_names: list[str] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.splits.values())).shape


@dataclass
class DataBundle:
    """Seeded train/val/test splits plus what a model needs to know about the data."""

    train: Split
    val: Split | None
    test: Split | None
    shape: tuple[int, ...]  # per sample, no batch dim
    value_range: tuple[float, float]
    num_classes: int | None
    name: str
    class_names: list[str] | None = field(default=None)
    normalization: Any = None  # vaelab.data.normalize.Standardizer when data.options.standardize; value_range is then in its units

    @cached_property
    def spec(self) -> DataSpec:
        """What a model may know about this data (computed on first use, then fixed for the bundle)."""
        return data_spec(self)

    def splits(self) -> dict[str, Split]:
        return {k: s for k, s in (("train", self.train), ("val", self.val), ("test", self.test)) if s is not None}


Loader = Callable[[Path | None, BaseModel], Source]


def require_path(path: Path | None, name: str, what: str) -> Path:
    """The dataset's path, or a DataError saying what it should point to."""
    if path is None:
        raise DataError(f"data.path is required for dataset {name!r}: give {what}")
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: does not exist (dataset {name!r} expects {what})")
    return path
