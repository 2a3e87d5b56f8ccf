"""Seed 001's attention block (`VAE_AttentionBlock`), fixed: its GroupNorm is applied and it is not causal."""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from vaelab.core.dsl import Param
from vaelab.core.errors import ModelError
from vaelab.layers.checks import positive
from vaelab.layers.norm import block_group_norm
from vaelab.core.registry import Registry


class SpatialSelfAttention(nn.Module):
    """Single-head self-attention over all spatial positions of a (B, C, *S) map, plus the input (residual).

    Seed 001 built the GroupNorm but never applied it and masked image positions causally; here every
    position attends to every other one.
    """

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-5):
        super().__init__()
        positive(c=channels)
        self.norm = block_group_norm(channels, groups, eps)
        self.in_proj = nn.Linear(channels, 3 * channels)
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, *S)
        if x.dim() < 3:
            raise ModelError(f"VAEA expects (B, C, *spatial) input, got shape {tuple(x.shape)}")
        b, c, *spatial = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C), N = prod(S)
        q, k, v = self.in_proj(h).chunk(3, dim=-1)  # each (B, N, C)
        # as (B, heads=1, N, C): the fused kernels (flash on CPU) need 4-D input; 3-D falls back to the math path,
        # which holds the (N, N) score matrix: 17 GB for a 2048x2048 image's 256x256 latent
        h = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)  # no mask; scale 1/sqrt(C)
        h = self.out_proj(h).transpose(1, 2).reshape(b, c, *spatial)
        return x + h


def register(reg: Registry) -> None:
    reg.register(
        "VAEA", SpatialSelfAttention, params=(Param("c"), Param("groups", int, 32), Param("eps", float, 1e-5)),
        doc="seed 001 attention block: GroupNorm(groups, eps), single-head non-causal self-attention, residual",
        example=("VAEA_8", (8, 4, 4)), dims=None,
    )
