"""In-distribution data made out-of-distribution by name (`CORRUPTIONS`): what the search's `ood` objective
scores against when it is given no OOD dataset. Each corruption maps (x, value_range, amount, generator) to an
array of the same shape inside value_range; adding one is one registered function (the contract test in
tests/test_ood_registry.py covers it)."""
from __future__ import annotations

import torch
from torch import Tensor

from vaelab.core.errors import ConfigError
from vaelab.core.registry import Registry, UnknownNameError

CORRUPTIONS: Registry = Registry("corruption")


@CORRUPTIONS.register("noise", doc="replace a share `amount` of the values with uniform noise over the value range")
def noise(x: Tensor, value_range: tuple[float, float], amount: float, generator: torch.Generator) -> Tensor:
    lo, hi = value_range
    mask = torch.rand(x.shape, generator=generator) < amount
    return torch.where(mask, lo + (hi - lo) * torch.rand(x.shape, generator=generator), x)


@CORRUPTIONS.register("invert", doc="flip every value within the value range (lo + hi - x); `amount` unused")
def invert(x: Tensor, value_range: tuple[float, float], amount: float, generator: torch.Generator) -> Tensor:
    lo, hi = value_range
    return lo + hi - x


@CORRUPTIONS.register("shuffle", doc="permute the features of each sample at random; `amount` unused")
def shuffle(x: Tensor, value_range: tuple[float, float], amount: float, generator: torch.Generator) -> Tensor:
    flat = x.reshape(len(x), -1)
    idx = torch.argsort(torch.rand(flat.shape, generator=generator), dim=1)
    return flat.gather(1, idx).reshape(x.shape)


def corrupt(x: Tensor, value_range: tuple[float, float], *, kind: str, amount: float, generator: torch.Generator) -> Tensor:
    """x corrupted by the registered corruption `kind`; an unknown kind is a ConfigError listing the valid ones."""
    try:
        fn = CORRUPTIONS.get(kind)
    except UnknownNameError as e:
        raise ConfigError(f"objective ood: corruption: {e}") from None
    return fn(x, value_range, amount, generator)


__all__ = ["CORRUPTIONS", "corrupt"]
