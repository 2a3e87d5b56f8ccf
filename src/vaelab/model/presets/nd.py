"""conv1d / conv2d / conv3d presets: one conv VAE recipe for signals (C, L), images (C, H, W), volumes (C, D, H, W).

The same layer strings at each rank (C1d/C2d/C3d, CT1d/CT2d/CT3d): two stride-2 convolutions, a flat latent with
linear heads, and the mirrored decoder. Each spatial size must be divisible by 4.
"""
from __future__ import annotations

import math

from vaelab.core.vocab import PRESETS

_NAMES = {1: ("C1d", "CT1d", "BN1d"), 2: ("C2d", "CT2d", "BN2d"), 3: ("C3d", "CT3d", "BN3d")}
_KINDS = {1: "signals (C, L)", 2: "images (C, H, W)", 3: "volumes (C, D, H, W)"}


def conv_nd(dims: int, shape, cond: int = 0, out: int = 1, *, width: int = 16, latent: int = 8) -> dict:
    if len(shape) != dims + 1:
        raise ValueError(f"conv{dims}d is for {_KINDS[dims]}, but the data is {tuple(shape)} per sample; "
                         f"use {', '.join(f'conv{d}d' for d in _NAMES if len(shape) == d + 1) or 'a preset for its rank'}")
    spatial = list(shape[1:])
    if any(s % 4 for s in spatial):
        raise ValueError(f"conv{dims}d halves each spatial size twice: sizes {spatial} must be divisible by 4")
    conv, convt, bn = _NAMES[dims]
    c, w = shape[0], width
    small = [s // 4 for s in spatial]
    flat = 2 * w * math.prod(small)
    enc = [f"{conv}_{c + cond}_{w}_4_2_1", f"{bn}_{w}", "ReLU", f"{conv}_{w}_{2 * w}_4_2_1", f"{bn}_{2 * w}", "ReLU", "Flatten"]
    heads = {"mu": [f"Linear_{flat}_{latent}"], "logvar": [f"Linear_{flat}_{latent}"]}
    dec = [f"Linear_{latent + cond}_{flat}", "ReLU", "Unflatten_" + "_".join(map(str, [2 * w, *small])),
           f"{convt}_{2 * w}_{w}_4_2_1", f"{bn}_{w}", "ReLU", f"{convt}_{w}_{c * out}_4_2_1"]
    return {"encoder": enc, "heads": heads, "decoder": dec}


@PRESETS.register("conv1d", doc="conv VAE for 1D signals (C, L): two stride-2 Conv1d, linear latent heads; L divisible by 4")
def conv1d(shape, cond: int = 0, out: int = 1, *, width: int = 16, latent: int = 8) -> dict:
    return conv_nd(1, shape, cond, out, width=width, latent=latent)


@PRESETS.register("conv2d", doc="conv VAE for images (C, H, W): two stride-2 Conv2d, linear latent heads; H, W divisible by 4")
def conv2d(shape, cond: int = 0, out: int = 1, *, width: int = 16, latent: int = 8) -> dict:
    return conv_nd(2, shape, cond, out, width=width, latent=latent)


@PRESETS.register("conv3d", doc="conv VAE for volumes (C, D, H, W): two stride-2 Conv3d, linear latent heads; D, H, W divisible by 4")
def conv3d(shape, cond: int = 0, out: int = 1, *, width: int = 16, latent: int = 8) -> dict:
    return conv_nd(3, shape, cond, out, width=width, latent=latent)
