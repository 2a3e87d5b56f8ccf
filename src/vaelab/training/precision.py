"""Where and in what precision training computes: `train.device` and `train.precision`.

PRECISIONS names the autocast context and whether gradients are scaled.

Each entry of PRECISIONS is a `Precision`; the step asks it for its autocast context and a GradScaler that is
a real one for fp16 and a no-op (`enabled=False`, same methods) otherwise, so no caller branches on the name.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import torch

from vaelab.core.errors import ConfigError
from vaelab.core.registry import UnknownNameError
from vaelab.core.vocab import PRECISIONS


@dataclass(frozen=True)
class Precision:
    name: str
    dtype: torch.dtype | None  # autocast dtype; None: no autocast (fp32)
    scaled: bool = False  # gradients go through a GradScaler
    cuda_only: bool = False
    why_cuda: str = ""

    def check(self, device: torch.device) -> None:
        """Raise a ConfigError naming the fix when this precision cannot train on `device`."""
        if self.cuda_only and device.type != "cuda":
            raise ConfigError(f"train.precision: {self.name} needs a CUDA device ({self.why_cuda}); use bf16 on CPU")

    def autocast(self, device: torch.device) -> ContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """A GradScaler: active for scaled precisions, else a no-op (scale() returns the loss, step() steps)."""
        return torch.amp.GradScaler(device.type, enabled=self.scaled)


for _p, _doc in (
    (Precision("fp32", None), "float32 throughout"),
    (Precision("bf16", torch.bfloat16), "bfloat16 autocast (CPU and CUDA); the loss terms stay float32"),
    (Precision("fp16", torch.float16, scaled=True, cuda_only=True,
               why_cuda="CPUs lack fast fp16 and gradient scaling"),
     "float16 autocast with gradient scaling (CUDA only)"),
):
    PRECISIONS.register(_p.name, _p, doc=_doc)


def resolve_device(name: str) -> torch.device:
    """`train.device`: auto (CUDA when available), or a torch device name that must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but no CUDA device is available; use train.device: cpu or auto")
    return dev


def get_precision(name: str, device: torch.device | None = None) -> Precision:
    """The registered precision `name`, checked against `device` when one is given."""
    try:
        precision = PRECISIONS.get(name)
    except UnknownNameError as e:
        raise ConfigError(f"train.precision: {e}") from None
    if device is not None:
        precision.check(device)
    return precision
