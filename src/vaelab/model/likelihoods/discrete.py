"""Likelihoods for 8-bit data: a 256-way categorical per value, and the discretised logistic mixture of
PixelCNN++ (Salimans et al., ICLR 2017) as NVAE uses it. Both are probability mass functions over the 256
evenly spaced values of the data's range, so their NLL in bits per dimension is comparable with the literature.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from vaelab.core.vocab import StrictOptions
from vaelab.model.likelihoods.base import Likelihood, grid, gumbel_argmax, level_values, to_index, uniform

LEVELS = 256
HALF_BIN = 1.0 / (LEVELS - 1)  # half the distance between neighbouring values on [-1, 1]


def _8bit_misfit(name: str, bits: int | None) -> str | None:
    if bits == 8:
        return None
    return (f"{name} is for 8-bit data (every value one of 256 evenly spaced levels of the value range), but this "
            "data's values are not on that grid (or no data was loaded to tell, as with check --no-data): use "
            "model.likelihood: bernoulli or continuous_bernoulli for [0, 1] data, or gaussian")


class Categorical256(Likelihood):
    """One softmax over the 256 levels per value: the decoder gives 256 logits per data channel
    (DCGAN-style decoders of likelihood regret, Xiao et al. 2020)."""

    name, discrete, levels, uses_activation = "categorical256", True, LEVELS, False

    @classmethod
    def per_value(cls, options) -> int:
        return LEVELS

    @classmethod
    def misfit(cls, value_range, bits):
        return _8bit_misfit(cls.name, bits)

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        return F.cross_entropy(self.split(params), to_index(x, self.value_range, LEVELS), reduction="none")

    def nll_per_sample(self, params: Tensor, x: Tensor) -> Tensor:
        """Where the 256 logits of a value lie next to each other in memory (a channels-last decoder output with
        one data channel: vaelab.model.layout), a log-softmax over that contiguous last dim and a gather read them
        once, with no copy: ~4x faster than cross_entropy over dim 1 on (B, 256, 28, 28) NCHW, same values to float
        rounding. Other layouts take the cross-entropy of `nll`."""
        last = self.split(params).movedim(1, -1)  # (B, C, *rest, 256), a view
        if not last.is_contiguous():
            return super().nll_per_sample(params, x)
        index = to_index(x, self.value_range, LEVELS).unsqueeze(-1)
        log_p = F.log_softmax(last, dim=-1).gather(-1, index).squeeze(-1)
        return -log_p.reshape(x.shape[0], -1).sum(dim=1)

    def probs(self, params: Tensor) -> Tensor:
        """(B, 256, C, *rest) probabilities."""
        return torch.softmax(self.split(params), dim=1)

    def mean(self, params: Tensor) -> Tensor:
        p = self.probs(params)
        v = grid(self.value_range, LEVELS, p).view(1, LEVELS, *([1] * (p.dim() - 2)))
        return (p * v).sum(dim=1).to(params.dtype)

    def mode(self, params: Tensor) -> Tensor:
        return level_values(self.split(params).argmax(dim=1), self.value_range, LEVELS)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return level_values(gumbel_argmax(self.split(params), 1, generator), self.value_range, LEVELS)

    def support(self) -> Tensor:
        return torch.linspace(*self.value_range, LEVELS)


class MixtureOptions(StrictOptions):
    components: int = Field(10, ge=1, le=64, description="logistic components per value (PixelCNN++ uses 10)")
    min_log_scale: float = Field(-7.0, description="log-scales are clamped from below here, as in PixelCNN++")


class LogisticMixture(Likelihood):
    """Discretised mixture of K logistics per value (PixelCNN++'s discretized_mix_logistic_loss): the decoder
    gives K mixture logits, K locations and K log-scales per data channel (3K outputs), on the data mapped to
    [-1, 1]; the end levels take the tails. Channels are independent given z (no PixelCNN++ channel coupling)."""

    name, discrete, levels, uses_activation = "logistic_mixture", True, LEVELS, False

    @classmethod
    def per_value(cls, options) -> int:
        return 3 * options.components

    @classmethod
    def misfit(cls, value_range, bits):
        return _8bit_misfit(cls.name, bits)

    def _parts(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(mixture logits, locations, log-scales), each (B, K, C, *rest)."""
        k = self.options.components
        p = self.split(params)
        return p[:, :k], p[:, k : 2 * k], p[:, 2 * k :].clamp_min(self.options.min_log_scale)

    def _pm1(self, x: Tensor) -> Tensor:
        lo, hi = self.value_range
        return (x.float() - lo) * (2.0 / (hi - lo)) - 1.0

    def _from_pm1(self, y: Tensor) -> Tensor:
        lo, hi = self.value_range
        return (y + 1.0) * ((hi - lo) / 2.0) + lo

    def log_prob_pm1(self, parts: tuple[Tensor, Tensor, Tensor], y: Tensor) -> Tensor:
        """log P(y) for y on the 256-level grid of [-1, 1], (B, C, *rest) -> (B, C, *rest)."""
        logit_pi, mu, log_s = parts
        centered = y.unsqueeze(1) - mu
        inv_s = torch.exp(-log_s)
        plus_in, min_in = inv_s * (centered + HALF_BIN), inv_s * (centered - HALF_BIN)
        log_cdf_plus = plus_in - F.softplus(plus_in)  # the bottom level takes the lower tail
        log_one_minus_cdf_min = -F.softplus(min_in)  # the top level takes the upper tail
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        mid_in = inv_s * centered
        log_pdf_mid = mid_in - log_s - 2.0 * F.softplus(mid_in)  # where the bin's mass underflows: density x width
        inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid + math.log(2 * HALF_BIN))
        yy = y.unsqueeze(1)
        lp = torch.where(yy < -0.999, log_cdf_plus, torch.where(yy > 0.999, log_one_minus_cdf_min, inner))
        return torch.logsumexp(lp + F.log_softmax(logit_pi, dim=1), dim=1)

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        y = to_index(x, self.value_range, LEVELS).float() * (2.0 * HALF_BIN) - 1.0  # exactly on the grid
        return -self.log_prob_pm1(self._parts(params), y)

    def mean(self, params: Tensor) -> Tensor:
        """Sum_k pi_k E[clip(Y_k, -1, 1)] with E[clip] = -1 + s (softplus((mu + 1)/s) - softplus((mu - 1)/s)):
        the discretised value is Y rounded to the nearest level, so this is its mean to within half a level."""
        logit_pi, mu, log_s = self._parts(params)
        s = log_s.exp()
        clipped = -1.0 + s * (F.softplus((mu + 1.0) / s) - F.softplus((mu - 1.0) / s))
        return self._from_pm1((torch.softmax(logit_pi, dim=1) * clipped).sum(dim=1)).to(params.dtype)

    def mode(self, params: Tensor) -> Tensor:
        """The most probable level, found by scoring all 256 (one pass per level, no 256-fold tensor)."""
        parts = self._parts(params)
        best_lp = best = None
        for i in range(LEVELS):
            y = torch.full_like(parts[1][:, 0], i * 2.0 * HALF_BIN - 1.0)
            lp = self.log_prob_pm1(parts, y)
            if best is None:
                best_lp, best = lp, torch.zeros_like(lp, dtype=torch.long)
            else:
                better = lp > best_lp
                best_lp, best = torch.where(better, lp, best_lp), torch.where(better, i, best)
        return level_values(best, self.value_range, LEVELS)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        logit_pi, mu, log_s = self._parts(params)
        k = gumbel_argmax(logit_pi, 1, generator).unsqueeze(1)  # (B, 1, C, *rest)
        m, ls = mu.gather(1, k).squeeze(1), log_s.gather(1, k).squeeze(1)
        u = uniform(tuple(m.shape), m, generator)
        y = m + ls.exp() * (torch.log(u) - torch.log1p(-u))  # a logistic draw on [-1, 1] units
        index = torch.round((y + 1.0) / (2.0 * HALF_BIN)).clamp(0, LEVELS - 1).long()  # the level it falls in
        return level_values(index, self.value_range, LEVELS)

    def support(self) -> Tensor:
        return torch.linspace(*self.value_range, LEVELS)


__all__ = ["Categorical256", "LogisticMixture", "MixtureOptions", "LEVELS"]
