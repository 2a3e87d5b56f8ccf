"""Seed 001's residual block (`VAE_ResidualBlock`) for 1D, 2D and 3D feature maps."""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from vaelab.core.dsl import Param
from vaelab.core.errors import ModelError
from vaelab.layers.checks import positive
from vaelab.layers.conv import CONV
from vaelab.layers.norm import block_group_norm
from vaelab.core.registry import Registry


class ResidualBlock(nn.Module):
    """GN-SiLU-Conv3-GN-SiLU-Conv3 plus a skip (Identity if in == out, else a 1x1 conv).

    GroupNorm uses `groups` (32) groups, or the largest divisor of the channel count <= groups, with `eps`
    (see `block_group_norm`); diffusers' ResnetBlock2D is this block with eps 1e-6.
    """

    def __init__(self, in_channels: int, out_channels: int, dims: int = 2, *, groups: int = 32, eps: float = 1e-5):
        super().__init__()
        positive(in_=in_channels, out=out_channels)
        conv = CONV[dims]
        self.dims = dims
        self.norm1 = block_group_norm(in_channels, groups, eps)
        self.conv1 = conv(in_channels, out_channels, 3, padding=1)
        self.norm2 = block_group_norm(out_channels, groups, eps)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else conv(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, *S) -> (B, C_out, *S), len(S) == dims
        if x.dim() != self.dims + 2:
            names = {1: "VAERB1d", 2: "VAERB", 3: "VAERB3d"}
            raise ModelError(
                f"{names[self.dims]} expects (B, C, {self.dims} spatial dims), got shape {tuple(x.shape)}; "
                f"use {names.get(x.dim() - 2, 'a block of matching rank')} for this input"
            )
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


def _residual(dims: int):
    def build(in_: int, out: int, groups: int = 32, eps: float = 1e-5) -> nn.Module:
        return ResidualBlock(in_, out, dims, groups=groups, eps=eps)
    return build


def register(reg: Registry) -> None:
    shapes = {1: (8, 10), 2: (8, 6, 6), 3: (8, 4, 4, 4)}
    for d, shape in shapes.items():
        name = "VAERB" if d == 2 else f"VAERB{d}d"  # seed 001's VAERB is 2D
        reg.register(
            name, _residual(d), params=(Param("in"), Param("out"), Param("groups", int, 32), Param("eps", float, 1e-5)),
            doc=f"seed 001 residual block on {d}D maps: (GN, SiLU, Conv3x3) x2 + skip; GN groups (<=) and eps",
            example=(f"{name}_8_12", shape), dims=d,
        )
