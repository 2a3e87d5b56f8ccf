"""Normalisation layers: GN, BN1d/2d/3d, LN, and the GroupNorm used inside seed 001's blocks."""
from __future__ import annotations

from torch import nn

from vaelab.core.dsl import Param
from vaelab.core.errors import ModelError
from vaelab.layers.checks import divisors, positive
from vaelab.core.registry import Registry

_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def block_group_norm(channels: int, groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm(32, channels) as in seed 001's blocks, or, when 32 does not divide `channels`, the largest
    divisor of `channels` that is <= 32 (seed 001 crashed there; small test models need e.g. 8 or 12 channels).
    `groups` and `eps` are the blocks' optional arguments (diffusers' AutoencoderKL uses eps 1e-6)."""
    if channels < 1:
        raise ModelError(f"channels must be >= 1 for GroupNorm, got {channels}")
    positive(groups=groups)
    if not eps > 0:
        raise ModelError(f"GroupNorm eps must be > 0, got {eps}")
    return nn.GroupNorm(divisors(channels, groups)[-1], channels, eps=eps)


def group_norm(groups: int, channels: int, eps: float = 1e-5) -> nn.Module:
    positive(groups=groups, channels=channels)
    if channels % groups:
        choices = ", ".join(str(d) for d in divisors(channels, 64))
        raise ModelError(f"{channels} channels do not split into {groups} groups; use a group count that divides "
                         f"{channels} ({choices})")
    if not eps > 0:
        raise ModelError(f"GroupNorm eps must be > 0, got {eps}")
    return nn.GroupNorm(groups, channels, eps=eps)


def batch_norm(channels: int, *, dims: int) -> nn.Module:
    positive(c=channels)
    return _BATCH_NORM[dims](channels)


def layer_norm(*features: int) -> nn.Module:
    positive(**{f"features[{i}]": f for i, f in enumerate(features)})
    return nn.LayerNorm(tuple(features))


def _bn(dims: int):
    def build(c: int) -> nn.Module:
        return batch_norm(c, dims=dims)
    return build


def register(reg: Registry) -> None:
    reg.register(
        "GN", group_norm, params=(Param("groups"), Param("channels"), Param("eps", float, 1e-5)),
        doc="GroupNorm(groups, channels, eps); groups must divide channels", example=("GN_2_4", (4, 5, 5)), dims=None,
    )
    shapes = {1: (3, 7), 2: (3, 5, 5), 3: (3, 4, 4, 4)}
    for d, shape in shapes.items():
        reg.register(
            f"BN{d}d", _bn(d), params=(Param("c"),),
            doc=f"BatchNorm{d}d over c channels", example=(f"BN{d}d_3", shape), dims=d if d > 1 else None,
        )
    reg.register(
        "LN", layer_norm, params=(Param("features", variadic=True),),
        doc="LayerNorm over the trailing dims given", example=("LN_4_6", (3, 4, 6)), dims=None,
    )
