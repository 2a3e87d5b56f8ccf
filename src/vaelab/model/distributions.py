"""The diagonal Gaussian posterior q(z|x) and the standard-normal prior log-density."""
from __future__ import annotations

import math

import torch
from torch import Tensor

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0  # keeps exp(logvar) finite in float32 (seed 001's clamp)
_LOG_2PI = math.log(2.0 * math.pi)


def _sum_per_sample(t: Tensor) -> Tensor:
    """Sum over every non-batch dim: (B, ...) -> (B,)."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the non-batch dims -> (B,)."""
    z = z.float()
    return _sum_per_sample(-0.5 * (_LOG_2PI + z.pow(2)))


class DiagonalGaussian:
    """N(mean, diag(exp(logvar))) over a latent of any shape; the batch is dim 0.

    `logvar` is clamped to [-30, 20] on construction. `kl()` and `log_prob()` are computed in float32
    and summed over all non-batch dims, so they return (B,) whatever the latent shape.
    """

    def __init__(self, mean: Tensor, logvar: Tensor):
        if mean.shape != logvar.shape:
            raise ValueError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
        self.mean = mean  # (B, *latent)
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)  # (B, *latent)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> Tensor:
        return torch.exp(self.logvar)

    @property
    def shape(self) -> torch.Size:
        return self.mean.shape

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised draw mean + std * eps; eps from `generator`, else from the global RNG."""
        if generator is None:
            eps = torch.randn_like(self.mean)
        else:
            eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        return self.mean

    def kl_per_dim(self) -> Tensor:
        """KL(q || N(0, I)) per latent element, same shape as `mean` (float32)."""
        mean, logvar = self.mean.float(), self.logvar.float()
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) in nats, summed over the latent -> (B,)."""
        return _sum_per_sample(self.kl_per_dim())

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z) summed over the latent -> (B,)."""
        mean, logvar, z = self.mean.float(), self.logvar.float(), z.float()
        return _sum_per_sample(-0.5 * (_LOG_2PI + logvar + (z - mean).pow(2) * torch.exp(-logvar)))

    def detach(self) -> "DiagonalGaussian":
        return DiagonalGaussian(self.mean.detach(), self.logvar.detach())

    def __repr__(self) -> str:
        return f"DiagonalGaussian(shape={tuple(self.mean.shape)}, dtype={self.mean.dtype})"
