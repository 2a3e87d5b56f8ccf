"""Seed 001's short convolution, pooling and upsampling layers, for 1D/2D/3D maps (dims is a parameter)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from vaelab.core.dsl import Param
from vaelab.core.errors import ModelError
from vaelab.layers.checks import non_negative, positive
from vaelab.core.registry import Registry

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_EXAMPLE_SHAPE = {1: (3, 16), 2: (3, 16, 16), 3: (3, 8, 8, 8)}

CONV_PARAMS = (Param("in"), Param("out"), Param("kernel"), Param("stride"), Param("padding"))
POOL_PARAMS = (Param("k"), Param("s"))


def conv(dims: int) -> Callable[..., nn.Module]:
    def build(in_: int, out: int, kernel: int, stride: int, padding: int) -> nn.Module:
        positive(in_=in_, out=out, kernel=kernel, stride=stride)
        non_negative(padding=padding)
        return CONV[dims](in_, out, kernel, stride, padding)
    return build


def conv_transpose(dims: int) -> Callable[..., nn.Module]:
    def build(in_: int, out: int, kernel: int, stride: int, padding: int, output_padding: int = 0) -> nn.Module:
        positive(in_=in_, out=out, kernel=kernel, stride=stride)
        non_negative(padding=padding, output_padding=output_padding)
        if output_padding >= stride:
            raise ModelError(f"output_padding must be < stride ({stride}), got {output_padding}")
        return CONV_T[dims](in_, out, kernel, stride, padding, output_padding)
    return build


def pool(table: dict[int, type[nn.Module]], dims: int) -> Callable[..., nn.Module]:
    def build(k: int, s: int) -> nn.Module:
        positive(k=k, s=s)
        return table[dims](k, s)
    return build


def upsample(scale: int) -> nn.Module:
    """Nearest-neighbour upsampling by an integer factor; works for any input rank."""
    positive(scale=scale)
    return nn.Upsample(scale_factor=scale, mode="nearest")


class Pad(nn.Module):
    """Zero padding of the trailing dims in `F.pad` order: (left, right[, top, bottom[, front, back]])."""

    def __init__(self, *pads: int):
        super().__init__()
        non_negative(**{f"pads[{i}]": p for i, p in enumerate(pads)})
        if len(pads) % 2 or len(pads) > 6:
            raise ModelError(f"Pad takes 2, 4 or 6 values (left, right, top, bottom, front, back), got {len(pads)}")
        self.pads = tuple(pads)

    def forward(self, x):  # (B, C, *S) -> (B, C, *S + padding)
        return nn.functional.pad(x, self.pads)

    def extra_repr(self) -> str:
        return str(self.pads)


def register(reg: Registry) -> None:
    reg.register(
        "Pad", Pad, params=(Param("pads", variadic=True),),
        doc="zero padding, F.pad order (left, right, top, bottom, ...); Pad_0_1_0_1 before a stride-2 conv is diffusers' downsampling",
        example=("Pad_0_1_0_1", (3, 4, 4)), dims=None,
    )
    for d in (1, 2, 3):
        shape = _EXAMPLE_SHAPE[d]
        reg.register(
            f"C{d}d", conv(d), params=CONV_PARAMS,
            doc=f"Conv{d}d(in, out, kernel, stride, padding)", example=(f"C{d}d_3_4_3_2_1", shape), dims=d,
        )
        reg.register(
            f"CT{d}d", conv_transpose(d), params=(*CONV_PARAMS, Param("output_padding", int, 0)),
            doc=f"ConvTranspose{d}d(in, out, kernel, stride, padding, output_padding)",
            example=(f"CT{d}d_3_4_3_2_1_1", shape), dims=d,
        )
        reg.register(
            f"MaxP{d}d", pool(MAX_POOL, d), params=POOL_PARAMS,
            doc=f"MaxPool{d}d(kernel k, stride s)", example=(f"MaxP{d}d_2_2", shape), dims=d,
        )
        if d == 2:  # seed 001 writes the 2D one as `MaxP`; its .mstruct files keep working
            reg.register("MaxP", pool(MAX_POOL, 2), params=POOL_PARAMS, doc="seed 001's name for MaxP2d",
                         example=("MaxP_2_2", shape), dims=2)
        reg.register(
            f"AvgP{d}d", pool(AVG_POOL, d), params=POOL_PARAMS,
            doc=f"AvgPool{d}d(kernel k, stride s)", example=(f"AvgP{d}d_2_2", shape), dims=d,
        )
    reg.register(
        "UpS", upsample, params=(Param("scale"),),
        doc="nearest-neighbour upsampling by an integer scale (any rank)", example=("UpS_2", (3, 4, 4)), dims=None,
    )
