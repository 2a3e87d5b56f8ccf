"""Per-feature standardisation (`data.options.standardize`): fitted on the training split, stored with the run,
undone on everything a user gets back (reconstructions, decoded latents, samples): the run's DataSpec carries it
(`spec.normalization`, `spec.to_data_units`, `spec.raw_range`).

Why: an MSE loss weighs every feature by its raw variance. On a motion-capture clip where most quaternion
components barely move, the few that do are drowned by the constant ones and the model decodes every frame to
the mean pose; with every feature at unit variance the loss sees the motion.

The model sees z = (x - mean) / std; `undo` maps model outputs back to the data's own units. Features whose
training std is below `MIN_STD` (constant features, e.g. a joint that never moves) keep std 1, so they are only
centred, never blown up by 1/0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vaelab.core.errors import DataError

MIN_STD = 1e-6  # float32 quaternions carry ~6e-8 rounding noise: below this a feature counts as constant
KIND = "standardize"


@dataclass(frozen=True)
class Standardizer:
    """mean, std: (*shape) float64 per feature (float32 would shift a feature whose std is 1e-4 of its mean by
    ~1e-3 std); raw_range: the data's declared value range before standardising."""

    mean: Tensor
    std: Tensor
    raw_range: tuple[float, float]

    def apply(self, x: Tensor) -> Tensor:
        """(N, *shape) in data units -> model units."""
        self._check(x)
        return ((x.double() - self.mean.to(x.device)) / self.std.to(x.device)).to(x.dtype)

    def undo(self, z: Tensor) -> Tensor:
        """(N, *shape) in model units -> data units."""
        self._check(z)
        return (z.double() * self.std.to(z.device) + self.mean.to(z.device)).to(z.dtype)

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.mean.shape):
            raise DataError(f"standardisation was fitted on samples of shape {tuple(self.mean.shape)}, "
                            f"got {tuple(x.shape[1:])}")

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (stored in the checkpoint's data description)."""
        return {"kind": KIND, "shape": list(self.mean.shape), "mean": self.mean.flatten().tolist(),
                "std": self.std.flatten().tolist(), "raw_range": [float(v) for v in self.raw_range]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Standardizer":
        if d.get("kind") != KIND:
            raise DataError(f"unknown normalisation {d.get('kind')!r} in the run's data description")
        shape = tuple(d["shape"])
        mean = torch.tensor(d["mean"], dtype=torch.float64).reshape(shape)
        std = torch.tensor(d["std"], dtype=torch.float64).reshape(shape)
        lo, hi = d["raw_range"]
        return cls(mean, std, (float(lo), float(hi)))


def fit_standardizer(x: Tensor, raw_range: tuple[float, float]) -> Standardizer:
    """Mean and std per feature of x (N, *shape), computed in float64; constant features keep std 1."""
    if x.shape[0] < 2:
        raise DataError(f"data.options.standardize needs at least 2 training samples to fit a std, got {x.shape[0]}")
    x64 = x.double()
    mean = x64.mean(dim=0)
    std = x64.std(dim=0, unbiased=False)
    std = torch.where(std < MIN_STD, torch.ones_like(std), std)
    return Standardizer(mean, std, (float(raw_range[0]), float(raw_range[1])))


__all__ = ["Standardizer", "fit_standardizer", "MIN_STD"]
