"""Vector layers, activations and reshapes: Linear, ReLU..., Drop, Identity, Flatten, Unflatten."""
from __future__ import annotations

from typing import Any

from torch import nn

from vaelab.core.dsl import Param, SpecError
from vaelab.layers.checks import positive, probability
from vaelab.core.registry import Registry

# name, class, doc: activations without arguments
_ACTIVATIONS = (
    ("ReLU", nn.ReLU, "max(x, 0)"),
    ("GELU", nn.GELU, "Gaussian error linear unit"),
    ("Tanh", nn.Tanh, "tanh(x), output in (-1, 1)"),
    ("Sigmoid", nn.Sigmoid, "1 / (1 + exp(-x)), output in (0, 1)"),
    ("SiLU", nn.SiLU, "x * sigmoid(x) (swish)"),
    ("ELU", nn.ELU, "exponential linear unit, alpha 1"),
    ("Identity", nn.Identity, "returns its input"),
)


def leaky_relu(slope: float = 0.01) -> nn.Module:
    return nn.LeakyReLU(slope)


def dropout(p: float) -> nn.Module:
    probability("p", p)
    return nn.Dropout(p)


def unflatten(*shape: int) -> nn.Module:
    """(B, prod(shape)) -> (B, *shape)."""
    positive(**{f"shape[{i}]": s for i, s in enumerate(shape)})
    return nn.Unflatten(1, list(shape))  # a list, as torch prints it in seed 003's model


def unflatten_torch_form(body: dict[str, Any]) -> dict[str, Any]:
    """Rewrite torch's `Unflatten(dim, unflattened_size)` (seed 003: `{Unflatten: {args: [1, [32, 2, 2]]}}`)
    into the short form's `args: [32, 2, 2]`; bodies without a list or torch keyword pass through unchanged."""
    args = list(body.get("args") or [])
    names = ("dim", "unflattened_size")
    if not any(isinstance(a, (list, tuple)) for a in args) and not set(names) & body.keys():
        return body
    rest = {k: v for k, v in body.items() if k not in ("args", *names)}
    if len(args) > 2:
        raise SpecError(f"Unflatten: torch form takes (dim, unflattened_size), got {len(args)} values in args")
    bound = dict(zip(names, args))
    for n in names:
        if n in body:
            if n in bound:
                raise SpecError(f"Unflatten: {n!r} given both in args and as a keyword")
            bound[n] = body[n]
    sizes, dim = bound.get("unflattened_size"), bound.get("dim")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise SpecError(f"Unflatten: torch form takes (dim, unflattened_size), e.g. {{Unflatten: {{args: [1, [32, 2, 2]]}}}}"
                        f"; got dim={dim!r}")
    if dim != 1:
        raise SpecError(
            f"Unflatten: only dim 1 (the first dim after the batch) is supported, got dim={bound['dim']!r}"
        )
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise SpecError(f"Unflatten: unflattened_size must be a non-empty list such as [32, 2, 2], got {sizes!r}")
    return {**rest, "args": list(sizes)}


def register(reg: Registry) -> None:
    reg.register(
        "Linear", nn.Linear,
        params=(Param("in_features", low=1), Param("out_features", low=1), Param("bias", bool, True)),
        doc="affine map over the last dim", example=("Linear_12_5", (12,)), dims=None,
    )
    for name, cls, doc in _ACTIVATIONS:
        reg.register(name, cls, params=(), doc=doc, example=(name, (3, 4)), dims=None)
    reg.register(
        "LReLU", leaky_relu, params=(Param("slope", float, 0.01),),
        doc="leaky ReLU with negative slope", example=("LReLU_0.2", (3, 4)), dims=None,
    )
    reg.register(
        "Drop", dropout, params=(Param("p", float),),
        doc="dropout with probability p (training only)", example=("Drop_0.1", (3, 4)), dims=None,
    )
    reg.register(
        "Flatten", nn.Flatten, params=(Param("start_dim", int, 1), Param("end_dim", int, -1)),
        doc="flatten dims start_dim..end_dim (default: all but the batch)", example=("Flatten", (2, 3, 4)), dims=None,
    )
    reg.register(
        "Unflatten", unflatten, params=(Param("shape", variadic=True),),
        doc="(B, prod(shape)) -> (B, *shape); also torch's {Unflatten: {args: [1, [C, H, W]]}}",
        example=("Unflatten_3_2_2", (12,)), dims=None, adapt_mapping=unflatten_torch_form,
    )
