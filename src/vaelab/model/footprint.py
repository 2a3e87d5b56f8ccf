"""A model's size, found from shapes alone, before any weight is allocated.

`estimate` builds the model on torch's meta device (tensors with shapes and no storage: building a layer of a
billion weights costs nothing) and runs one forward pass there, summing the bytes of every tensor an operation
creates. `check_fits` compares the training estimate with the memory available and refuses, with the numbers,
before `vaelab check` prints or `vaelab train` builds anything.

The estimate (fp32, an upper bound for bf16/fp16):
  weights, gradients and two optimizer moments: 16 bytes per parameter (20 with an EMA copy), plus
  activations: the bytes of every intermediate tensor of one forward pass, times the batch size
  (what autograd keeps for the backward pass is a subset of these).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vaelab.core.config import Config, ModelConfig
from vaelab.core.errors import ConfigError
from vaelab.data.spec import DataSpec
from vaelab.model.build import LayerRow, build_model
from vaelab.model.vae import VAE

GB = 1024**3
BYTES_PER_VALUE = 4  # fp32


class ResourceLimitError(ConfigError):
    """A config whose model or batch would not fit in the memory available."""


@dataclass
class Footprint:
    parameters: int
    activation_bytes: int  # intermediates of one sample's training forward pass
    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]
    output_activation: str
    model: VAE  # on the meta device: shapes and attributes only, no weights

    def training_bytes(self, batch_size: int, *, ema: bool = False) -> int:
        copies = 4 + (1 if ema else 0)  # weights, gradients, 2 optimizer moments (+ EMA weights)
        return self.parameters * BYTES_PER_VALUE * copies + self.activation_bytes * batch_size

    def describe(self, batch_size: int, *, ema: bool = False) -> str:
        return (f"{self.parameters:,} parameters ({_gb(self.parameters * BYTES_PER_VALUE)} of weights), "
                f"{_gb(self.activation_bytes)} of activations per sample x batch {batch_size}: "
                f"about {_gb(self.training_bytes(batch_size, ema=ema))} to train")


def _gb(n: float) -> str:
    return f"{n / GB:.3g} GB" if n >= GB else f"{n / 1024**2:.3g} MB"


class _CountBytes(TorchDispatchMode):
    """Sums the bytes of every new tensor an aten op returns (views and in-place results share storage: skipped)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not any(r.alias_info is not None for r in func._schema.returns):
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.total += t.numel() * t.element_size()
        return out


def estimate(cfg: ModelConfig, data: DataSpec | Sequence[int] | None = None) -> Footprint:
    """Build the model on the meta device (shape checks included, nothing allocated) and measure it.

    One pass: the bytes counted while `build_model` runs are its weights and buffers plus every tensor of its
    shape-check forward pass over 2 samples (meta ops cost ~1 ms each, so a second pass would double the time
    of `vaelab check` on deep models)."""
    rows: list[LayerRow] = []
    counter = _CountBytes()
    with torch.device("meta"), counter:
        model = build_model(cfg, data, trace=rows)
    stored = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    activation = max(0, counter.total - stored) // 2  # per sample: the shape check runs 2
    return Footprint(model.num_parameters(), activation, rows, tuple(model.input_shape), tuple(model.latent_shape),
                     model.output_activation, model)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on `device`: the GPU's free memory, or the host's available RAM (None where unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(cfg: Config, device: torch.device) -> tuple[int | None, str]:
    """The byte limit a run must fit in, and where it comes from."""
    if cfg.train.max_memory_gb is not None:
        return int(cfg.train.max_memory_gb * GB), "train.max_memory_gb"
    free = available_bytes(device)
    return free, f"free memory on {device.type}"


def check_fits(fp: Footprint, cfg: Config, device: torch.device, batch_size: int | None = None) -> None:
    """Raise ResourceLimitError when training `fp` at the config's batch size needs more than the limit."""
    batch = batch_size or (cfg.train.batch_size if isinstance(cfg.train.batch_size, int) else 1)
    limit, source = memory_limit(cfg, device)
    need = fp.training_bytes(batch, ema=cfg.train.ema is not None)
    if limit is not None and need > limit:
        raise ResourceLimitError(
            f"model too large: {fp.describe(batch, ema=cfg.train.ema is not None)}, but only {_gb(limit)} "
            f"({source}); shrink the layers or train.batch_size, or raise the limit with --max-memory-gb "
            "(train.max_memory_gb)")
