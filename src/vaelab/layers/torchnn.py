"""torch.nn classes under their own names with their real argument names, for seed 003's mapping form:
`{Conv2d: {args: [1, 16, 4], stride: 2, padding: 1}}`. Linear, ReLU, Sigmoid, Tanh, Flatten and Unflatten
share their entries with the short forms (see basic.py). Sizes are integers (no per-dim tuples)."""
from __future__ import annotations

from torch import nn

from vaelab.core.dsl import Param
from vaelab.layers.conv import CONV, CONV_T
from vaelab.core.registry import Registry

_SHAPE = {1: (2, 12), 2: (2, 8, 8), 3: (2, 6, 6, 6)}
# low=: sizes are >= 1 and paddings >= 0 (torch itself builds a Conv2d with 0 channels)
_HEAD = (Param("in_channels", low=1), Param("out_channels", low=1), Param("kernel_size", low=1),
         Param("stride", int, 1, low=1), Param("padding", int, 0, low=0))
CONV_PARAMS = (*_HEAD, Param("dilation", int, 1, low=1), Param("groups", int, 1, low=1), Param("bias", bool, True),
               Param("padding_mode", str, "zeros", choices=("zeros", "reflect", "replicate", "circular")))
CONV_T_PARAMS = (*_HEAD, Param("output_padding", int, 0, low=0), Param("groups", int, 1, low=1),
                 Param("bias", bool, True), Param("dilation", int, 1, low=1))
BATCH_NORM_PARAMS = (Param("num_features", low=1), Param("eps", float, 1e-5), Param("momentum", float, 0.1),
                     Param("affine", bool, True), Param("track_running_stats", bool, True))
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def register(reg: Registry) -> None:
    for d in (1, 2, 3):
        shape = _SHAPE[d]
        reg.register(
            f"Conv{d}d", CONV[d], params=CONV_PARAMS,
            doc=f"torch.nn.Conv{d}d", example=(f"Conv{d}d_2_4_3_2_1", shape), dims=d,
        )
        reg.register(
            f"ConvTranspose{d}d", CONV_T[d], params=CONV_T_PARAMS,
            doc=f"torch.nn.ConvTranspose{d}d", example=(f"ConvTranspose{d}d_2_4_4_2_1", shape), dims=d,
        )
        reg.register(
            f"BatchNorm{d}d", _BATCH_NORM[d], params=BATCH_NORM_PARAMS,
            doc=f"torch.nn.BatchNorm{d}d", example=(f"BatchNorm{d}d_2", shape), dims=d if d > 1 else None,
        )
    reg.register(
        "LeakyReLU", nn.LeakyReLU, params=(Param("negative_slope", float, 0.01),),
        doc="torch.nn.LeakyReLU", example=("LeakyReLU_0.1", (3, 4)), dims=None,
    )
