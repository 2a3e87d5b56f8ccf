"""Seed 004's attention over feature tokens: Tok (features -> tokens), TEL (transformer layer), Detok."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaelab.core.dsl import Param
from vaelab.core.errors import ModelError
from vaelab.layers.checks import divisors, positive, probability
from vaelab.core.registry import Registry


class FeatureTokens(nn.Module):
    """(B, F) -> (B, F, D): each feature f has its own Linear(1, D), batched as x[:, f] * W[f] + b[f]."""

    def __init__(self, features: int, dim: int):
        super().__init__()
        positive(features=features, dim=dim)
        # nn.Linear(1, D)'s default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = 1
        self.weight = nn.Parameter(torch.empty(features, dim).uniform_(-1.0, 1.0))
        self.bias = nn.Parameter(torch.empty(features, dim).uniform_(-1.0, 1.0))

    def forward(self, x: Tensor) -> Tensor:  # (B, F)
        if x.dim() != 2 or x.shape[1] != self.weight.shape[0]:
            raise ModelError(f"Tok expects (B, {self.weight.shape[0]}) input, got shape {tuple(x.shape)}")
        return x.unsqueeze(-1) * self.weight + self.bias  # (B, F, D)


class FeatureReadout(nn.Module):
    """(B, F, D) -> (B, F): each token f has its own Linear(D, 1)."""

    def __init__(self, features: int, dim: int):
        super().__init__()
        positive(features=features, dim=dim)
        bound = 1.0 / math.sqrt(dim)  # nn.Linear(D, 1)'s default init
        self.weight = nn.Parameter(torch.empty(features, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:  # (B, F, D)
        if x.dim() != 3 or tuple(x.shape[1:]) != tuple(self.weight.shape):
            raise ModelError(f"Detok expects (B, {', '.join(map(str, self.weight.shape))}) input, "
                             f"got shape {tuple(x.shape)}")
        return torch.einsum("bfd,fd->bf", x, self.weight) + self.bias  # (B, F)


def transformer_layer(dim: int, heads: int, ff: int = 2048, dropout: float = 0.1) -> nn.Module:
    """nn.TransformerEncoderLayer over (B, T, dim), batch first (post-norm, ReLU feed-forward)."""
    positive(dim=dim, heads=heads, ff=ff)
    probability("dropout", dropout)
    if dim % heads:
        raise ModelError(f"dim {dim} must be divisible by heads {heads}; use heads in "
                         f"{', '.join(str(d) for d in divisors(dim, 64))}")
    return nn.TransformerEncoderLayer(dim, heads, ff, dropout, batch_first=True)


def register(reg: Registry) -> None:
    reg.register(
        "Tok", FeatureTokens, params=(Param("features"), Param("dim")),
        doc="(B, F) -> (B, F, dim): one Linear(1, dim) per feature", example=("Tok_5_8", (5,)), dims=None,
    )
    reg.register(
        "TEL", transformer_layer,
        params=(Param("dim"), Param("heads"), Param("ff", int, 2048), Param("dropout", float, 0.1)),
        doc="transformer encoder layer over (B, T, dim) tokens", example=("TEL_8_2_16_0.0", (5, 8)), dims=None,
    )
    reg.register(
        "Detok", FeatureReadout, params=(Param("features"), Param("dim")),
        doc="(B, F, dim) -> (B, F): one Linear(dim, 1) per token", example=("Detok_5_8", (5, 8)), dims=None,
    )
