"""Condition kinds by name: `CONDITIONS` (declared in vaelab.core.vocab, filled here).

A condition turns what the user gives with an input (a class label, a vector) into the (B, width) vector the
encoder and decoder see. Each kind is one class; callers use its methods instead of testing the kind's name.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from vaelab.core.errors import ConfigError, DataError
from vaelab.core.vocab import CONDITIONS


class Condition:
    """One model's condition: its kind and its width (the K of the (B, K) vector)."""

    name: ClassVar[str]
    takes_labels: ClassVar[bool] = False

    def __init__(self, width: int):
        self.width = int(width)

    @classmethod
    def width_for(cls, cfg: Any, spec: Any) -> int:
        """The width from `model.condition` (a ConditionConfig), else from the data's DataSpec."""
        raise NotImplementedError

    def vector(self, y: Tensor) -> Tensor:
        """What the user gives, (B,) labels or (B, K) vectors -> (B, width) float."""
        raise NotImplementedError

    def random_inputs(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        """n inputs of the right kind (for memory probes and shape checks)."""
        raise NotImplementedError

    def all_labels(self, per_label: int) -> Tensor | None:
        """Every label `per_label` times in a row, (width * per_label,); None where there are no labels."""
        return None

    def check_label(self, label: int, model_name: str = "the model") -> None:
        """Raise a DataError when `label` cannot be given to this model (as --label)."""
        raise DataError(f"--label: {model_name} takes condition vectors, not class labels")

    def __repr__(self) -> str:
        return f"{self.name}(width={self.width})"


@CONDITIONS.register("label", doc="class labels (B,), one-hot encoded; width = number of classes")
class LabelCondition(Condition):
    name, takes_labels = "label", True

    @classmethod
    def width_for(cls, cfg, spec) -> int:
        width = cfg.num_classes or spec.num_classes
        if not width:
            raise ConfigError("model.condition.num_classes: the data has no labels; give the number of classes")
        return int(width)

    def vector(self, y: Tensor) -> Tensor:
        y = y.long().view(-1)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.width):
            raise DataError(f"label out of range: the model has {self.width} classes (0..{self.width - 1})")
        return F.one_hot(y, self.width).float()

    def random_inputs(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.randint(0, self.width, (n,), device=device)

    def all_labels(self, per_label: int) -> Tensor:
        return torch.arange(self.width).repeat_interleave(per_label)

    def check_label(self, label: int, model_name: str = "the model") -> None:
        if not 0 <= label < self.width:
            raise DataError(f"--label {label} is out of range: {model_name} has {self.width} classes (0..{self.width - 1})")


@CONDITIONS.register("vector", doc="condition vectors (B, K) used as given; width = K")
class VectorCondition(Condition):
    name = "vector"

    @classmethod
    def width_for(cls, cfg, spec) -> int:
        width = cfg.dim or spec.condition_dim
        if not width:
            raise ConfigError("model.condition.dim: give the width of the condition vector")
        return int(width)

    def vector(self, y: Tensor) -> Tensor:
        v = y.float().view(y.shape[0], -1)
        if v.shape[1] != self.width:
            raise DataError(f"condition vectors have {v.shape[1]} values but the model takes {self.width}")
        return v

    def random_inputs(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.rand(n, self.width, device=device)


def make_condition(kind: str | None, width: int | None) -> Condition | None:
    return None if kind is None else CONDITIONS.get(kind)(int(width or 0))


__all__ = ["CONDITIONS", "Condition", "LabelCondition", "VectorCondition", "make_condition"]
