"""Layer strings and mappings -> LayerSpecs, checked against the LAYERS vocabulary (no torch import)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from vaelab.core import dsl
from vaelab.core.dsl import LayerSpec, Param, SpecError
from vaelab.core.vocab import LAYERS


def signature_of(name: str) -> tuple[Param, ...]:
    """The parameters of layer type `name` (raises UnknownNameError naming close matches)."""
    return LAYERS.entry(name).meta["params"]


def _adapt(item: Any, where: str) -> Any:
    if not (isinstance(item, Mapping) and len(item) == 1):
        return item
    (name, body), = item.items()
    if name not in LAYERS or not isinstance(body, Mapping):
        return item
    adapt = LAYERS.entry(name).meta.get("adapt_mapping")
    if adapt is None:
        return item
    try:
        return {name: adapt(dict(body))}
    except SpecError as e:
        raise SpecError(f"{where} {e}") from None


def parse_layers(items: Sequence[Any], where: str) -> list[LayerSpec]:
    """Parse layer strings / mappings into LayerSpecs; errors name `where[i]` and the token."""
    if isinstance(items, Sequence) and not isinstance(items, (str, bytes)):
        items = [_adapt(item, f"{where}[{i}]") for i, item in enumerate(items)]
    return dsl.parse_list(items, signature_of, where)


@dataclass(frozen=True)
class LayerLists:
    """A model's parsed layer lists: encoder, decoder and optional (mu, logvar) posterior heads."""

    encoder: tuple[LayerSpec, ...]
    decoder: tuple[LayerSpec, ...]
    heads: tuple[tuple[LayerSpec, ...], tuple[LayerSpec, ...]] | None = None
