"""Build layer sections from parsed specs and run a batch of zeros through them one layer at a time, so a shape
mismatch names the layer that breaks; `LayerRow`s are what `vaelab check` prints."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from vaelab.core.dsl import LayerSpec
from vaelab.core.errors import ModelError
from vaelab.layers import build_layer
from vaelab.model.vae import run_layers


@dataclass
class LayerRow:
    section: str  # "encoder", "heads.mu", ...
    index: int  # position in the section's list as written (before repeat expansion)
    token: str
    out_shape: tuple[int, ...]  # per sample
    params: int


@dataclass
class Section:
    """The modules of one layer list and, per module, (index as written, token) for messages."""

    name: str
    modules: nn.Sequential
    origin: list[tuple[int, str]]


def build_section(specs: Sequence[LayerSpec], name: str) -> Section:
    modules, origin = [], []
    for i, spec in enumerate(specs):
        for one in spec.expand():
            try:
                modules.append(build_layer(one))
            except (TypeError, ValueError) as e:
                raise ModelError(f"model.{name}[{i}] {spec}: cannot build: {e}") from None
            origin.append((i, str(spec)))
    return Section(name, nn.Sequential(*modules), origin)


def _expected_in(module: nn.Module) -> tuple[str, int] | None:
    for attr in ("in_features", "in_channels"):
        if hasattr(module, attr):
            return attr.replace("in_", ""), int(getattr(module, attr))
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        return "channels", module.num_features
    if isinstance(module, nn.GroupNorm):
        return "channels", module.num_channels
    return None


def run_section(section: Section, h: torch.Tensor, rows: list[LayerRow] | None, *, cond: torch.Tensor | None = None,
                cond_at: int = 0) -> torch.Tensor:
    """h through the section's modules (the condition joins before module `cond_at`), checking each input width."""

    def step(j: int, module: nn.Module, h: torch.Tensor) -> torch.Tensor:
        idx, token = section.origin[j]
        where = f"model.{section.name}[{idx}] {token!r}"
        want = _expected_in(module)
        if want is not None and h.dim() >= 2 and not isinstance(module, nn.Linear) and h.shape[1] != want[1]:
            raise ModelError(f"{where}: expects {want[1]} input {want[0]}, but the previous layer gives {h.shape[1]} "
                             f"(input shape {tuple(h.shape[1:])} per sample)")
        if isinstance(module, nn.Linear) and h.shape[-1] != module.in_features:
            raise ModelError(f"{where}: expects {module.in_features} input features, but the previous layer gives "
                             f"{h.shape[-1]} (input shape {tuple(h.shape[1:])} per sample)")
        try:
            out = module(h)
        except Exception as e:  # torch raises RuntimeError/ValueError/IndexError for shape trouble
            msg = str(e).splitlines()[0]
            raise ModelError(f"{where}: fails on input of shape {tuple(h.shape[1:])} per sample: {msg}") from None
        if rows is not None:
            rows.append(LayerRow(section.name, idx, token, tuple(out.shape[1:]), sum(p.numel() for p in module.parameters())))
        return out

    return run_layers(section.modules, h, cond, cond_at, step)


__all__ = ["LayerRow", "Section", "build_section", "run_section"]
