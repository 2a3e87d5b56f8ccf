"""DataSpec: everything a model is allowed to know about its data, built once per run and stored with it.

`build_model` takes nothing else from the data; the checkpoint stores `spec.to_dict()` under `data_spec`, and a
loaded run carries the spec back. Checkpoints written before the spec existed hold a `data_meta` dict with a
subset of the fields; `DataSpec.from_checkpoint` reads both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from vaelab.core.errors import CheckpointError
from vaelab.data.normalize import Standardizer

SPEC_KEY = "data_spec"  # checkpoint key since the spec exists
LEGACY_KEY = "data_meta"  # the untyped dict written before it
GRID_SAMPLES = 256  # training samples inspected to decide whether the values lie on the 8-bit grid
GRID_TOLERANCE = 1e-3  # in units of one 8-bit step


@dataclass(frozen=True)
class DataSpec:
    """What the model knows about the data (per-sample shape excludes the batch dim).

    value_range: the range the values are scaled to; (0, 1) when nothing says otherwise.
    bits: 8 when every value lies on the 256-level grid of value_range (8-bit images), else None.
    condition_dim: width of the condition vectors when the labels are vectors (N, K), else None.
    normalization: the per-feature standardisation (data.options.standardize) the model's inputs went through and
        its outputs must undo, or None; value_range is then the standardised data's range.
    """

    shape: tuple[int, ...]
    value_range: tuple[float, float] = (0.0, 1.0)
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    condition_dim: int | None = None
    name: str | None = None
    bits: int | None = None
    normalization: Standardizer | None = field(default=None, repr=False, compare=False)  # tensors: compared via to_dict

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "value_range", (float(self.value_range[0]), float(self.value_range[1])))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        if any(d <= 0 for d in self.shape):
            raise ValueError(f"data shape must be positive sizes, got {self.shape}")
        if self.value_range[0] > self.value_range[1]:
            raise ValueError(f"value_range {self.value_range}: low end above the high end")
        if self.normalization is not None and tuple(self.normalization.mean.shape) != self.shape:
            raise ValueError(f"the standardisation was fitted on samples of shape {tuple(self.normalization.mean.shape)}, "
                             f"not {self.shape}")

    # ------------------------------------------------------------------ queries
    @property
    def features(self) -> int:
        return math.prod(self.shape)

    @property
    def in_unit_interval(self) -> bool:
        lo, hi = self.value_range
        return lo >= 0.0 and hi <= 1.0

    @property
    def raw_range(self) -> tuple[float, float]:
        """The data's own value range: before standardisation when there is one, else value_range."""
        return self.value_range if self.normalization is None else self.normalization.raw_range

    def to_data_units(self, x: torch.Tensor) -> torch.Tensor:
        """Model outputs / inputs (N, *shape) -> the data's own units (undoes the standardisation, if any)."""
        return x if self.normalization is None else self.normalization.undo(x)

    def to_model_units(self, x: torch.Tensor) -> torch.Tensor:
        """Values in the data's own units (N, *shape) -> what the model takes."""
        return x if self.normalization is None else self.normalization.apply(x)

    # ------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """Plain lists, numbers and strings only, so `torch.load(weights_only=True)` reads it back."""
        return {
            "shape": list(self.shape), "value_range": list(self.value_range), "num_classes": self.num_classes,
            "class_names": None if self.class_names is None else list(self.class_names),
            "condition_dim": self.condition_dim, "name": self.name, "bits": self.bits,
            "normalization": None if self.normalization is None else self.normalization.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataSpec":
        """A spec from `to_dict` output or from the legacy `data_meta` dict (shape, value_range, num_classes,
        cond_dim, name, normalization)."""
        if not d.get("shape"):
            raise CheckpointError("the stored data description has no shape")
        norm = d.get("normalization")
        return cls(
            shape=tuple(d["shape"]),
            value_range=tuple(d["value_range"]) if d.get("value_range") else (0.0, 1.0),
            num_classes=d.get("num_classes"),
            class_names=d.get("class_names"),
            condition_dim=d.get("condition_dim", d.get("cond_dim")),
            name=d.get("name"),
            bits=d.get("bits"),
            normalization=None if not norm else Standardizer.from_dict(norm),
        )

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> "DataSpec | None":
        """The spec a checkpoint stores (new key, else the legacy dict); None when it stores neither."""
        raw = ckpt.get(SPEC_KEY) or ckpt.get(LEGACY_KEY)
        return cls.from_dict(raw) if raw else None


def of_shape(shape: Sequence[int] | DataSpec | None) -> DataSpec | None:
    """Accept a bare per-sample shape where a spec is wanted (nothing else known: values in [0, 1])."""
    if shape is None or isinstance(shape, DataSpec):
        return shape
    return DataSpec(tuple(shape))


def on_8bit_grid(x: torch.Tensor, value_range: tuple[float, float]) -> bool:
    """Whether every value of x is one of the 256 evenly spaced values of value_range (to 1e-3 of a step)."""
    lo, hi = value_range
    if x.numel() == 0 or hi <= lo:
        return False
    steps = (x.double() - lo) * (255.0 / (hi - lo))
    return bool(steps.min() >= -GRID_TOLERANCE and steps.max() <= 255.0 + GRID_TOLERANCE
                and (steps - steps.round()).abs().max() <= GRID_TOLERANCE)


def data_spec(bundle: Any) -> DataSpec:
    """The spec of a loaded DataBundle (vaelab.data.base, which calls this as `bundle.spec`): its shape, range,
    classes, condition width, standardisation, and whether it is 8-bit."""
    n = min(len(bundle.train), GRID_SAMPLES)
    x, y = bundle.train.take(n) if n else (torch.zeros(0), None)
    condition_dim = int(y.shape[1]) if y is not None and y.dim() == 2 else None
    return DataSpec(
        shape=tuple(bundle.shape), value_range=tuple(bundle.value_range), num_classes=bundle.num_classes,
        class_names=None if bundle.class_names is None else tuple(bundle.class_names), condition_dim=condition_dim,
        name=bundle.name, bits=8 if on_8bit_grid(x, tuple(bundle.value_range)) else None,
        normalization=bundle.normalization,
    )


__all__ = ["DataSpec", "data_spec", "of_shape", "on_8bit_grid", "SPEC_KEY", "LEGACY_KEY"]
