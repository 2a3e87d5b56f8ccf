"""Every layer type a layer string can name, in one registry, and the parse/build functions over it.

An entry is `LAYERS.register(NAME, builder, params=(Param, ...), doc="one line", example=(token, input_shape),
dims=...)`: `build_layer` calls `builder(*spec.args, **spec.kwargs)`, so keyword names equal Param names.
`dims` is the spatial rank a layer requires (1, 2 or 3), or None when any input rank works.
An entry may add `adapt_mapping(body) -> body` to accept another mapping form (torch's Unflatten(dim, sizes)).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from vaelab.core import dsl
from vaelab.core.dsl import LayerSpec, Param, SpecError
from vaelab.core.errors import ModelError
from vaelab.layers import attention, basic, blocks, conv, norm, tokens, torchnn
from vaelab.core.layer_specs import parse_layers, signature_of
from vaelab.core.vocab import LAYERS

__all__ = ["LAYERS", "signature_of", "parse_layers", "build_layer", "build_sequential", "describe_layers"]

for _module in (basic, norm, conv, blocks, attention, tokens, torchnn):
    _module.register(LAYERS)


def build_layer(spec: LayerSpec) -> nn.Module:
    """One module for one (unrepeated) spec; a bad argument raises ModelError naming the token."""
    builder = LAYERS.get(spec.type)
    try:
        return builder(*spec.args, **dict(spec.kwargs))
    except (ValueError, TypeError, RuntimeError) as e:
        raise ModelError(f"{spec}: {e}") from e


def build_sequential(specs: Sequence[LayerSpec]) -> nn.Sequential:
    return nn.Sequential(*(build_layer(s) for s in dsl.expand(specs)))


def describe_layers() -> list[tuple[str, str, str]]:
    """(name, "(in, out, kernel, stride, padding)", doc) per layer type, in registration order."""
    return [
        (e.name, f"({', '.join(p.describe() for p in e.meta['params'])})", e.meta["doc"])
        for e in LAYERS.entries()
    ]
