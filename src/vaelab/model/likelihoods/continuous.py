"""Likelihoods for values on a continuum: Bernoulli (and its normalised continuous version) for [0, 1] data,
Gaussians with fixed, learned shared or learned per-dimension variance, and Laplace.

`loss.recon: bce` is `bernoulli` and `loss.recon: mse` is `gaussian` with variance 0.5 and `normalised: false`:
the squared error, which is the Gaussian NLL with variance 1/2 minus its constant 0.5 * log(pi) per value.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from vaelab.core.vocab import StrictOptions
from vaelab.model.likelihoods.base import LOG_2PI, PROB_EPS, Likelihood, normal, uniform

CB_TAYLOR_BELOW = 1e-2  # |logit| under which the continuous Bernoulli's log-normaliser uses its Taylor series
CB_MEAN_SERIES_BELOW = 0.5  # ... and its mean (float32 cancellation ~1e-7 above, series error ~1e-8 below)


def _unit_interval_misfit(name: str, value_range: tuple[float, float]) -> str | None:
    lo, hi = value_range
    if lo >= 0.0 and hi <= 1.0:
        return None
    return (f"{name} models values in [0, 1] but the data spans [{lo:g}, {hi:g}]: use model.likelihood: gaussian "
            "(or laplace), or scale the data to [0, 1]")


class Bernoulli(Likelihood):
    """Bernoulli(sigmoid(logits)) per value; exact for binary data, the cross-entropy for grey values (which is
    not a normalised density on [0, 1]: see continuous_bernoulli). A decoder that already ends in a probability
    (its own Sigmoid, or a non-sigmoid output activation) is read as probabilities clamped to [1e-7, 1 - 1e-7]."""

    name, discrete, levels = "bernoulli", True, 2

    @classmethod
    def misfit(cls, value_range, bits):
        return _unit_interval_misfit(cls.name, value_range)

    @property
    def takes_logits(self) -> bool:
        return self.activation == "sigmoid"

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        h, x = params.float(), x.float()
        if self.takes_logits:
            return F.binary_cross_entropy_with_logits(h, x, reduction="none")
        return F.binary_cross_entropy(self.location(h).clamp(PROB_EPS, 1.0 - PROB_EPS), x, reduction="none")

    def mean(self, params: Tensor) -> Tensor:
        return self.location(params)

    def mode(self, params: Tensor) -> Tensor:
        return (self.mean(params) > 0.5).to(params.dtype)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        p = self.mean(params).float()
        return (uniform(tuple(p.shape), p, generator) < p).float()

    def support(self) -> Tensor:
        return torch.tensor([0.0, 1.0])


def cb_log_normaliser(logits: Tensor) -> Tensor:
    """log C(lambda) of the continuous Bernoulli with lambda = sigmoid(l): C = l / tanh(l / 2), even in l, -> 2 at 0."""
    a = logits.abs()
    small = a < CB_TAYLOR_BELOW
    safe = torch.where(small, torch.ones_like(a), a)
    exact = torch.log(safe) - torch.log(torch.tanh(safe / 2))
    taylor = math.log(2.0) + a.pow(2) / 12 - 7 * a.pow(4) / 1440
    return torch.where(small, taylor, exact)


class ContinuousBernoulli(Likelihood):
    """The continuous Bernoulli (Loaiza-Ganem & Cunningham, NeurIPS 2019): the Bernoulli cross-entropy plus the
    normaliser log C(lambda) that makes it a density on [0, 1]. Its mean is not lambda (see `mean`)."""

    name = "continuous_bernoulli"

    @classmethod
    def misfit(cls, value_range, bits):
        return _unit_interval_misfit(cls.name, value_range)

    def logits(self, params: Tensor) -> Tensor:
        h = params.float()
        return h if self.activation == "sigmoid" else torch.logit(self.location(h).clamp(PROB_EPS, 1.0 - PROB_EPS))

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        lg = self.logits(params)
        return F.binary_cross_entropy_with_logits(lg, x.float(), reduction="none") - cb_log_normaliser(lg)

    def mean(self, params: Tensor) -> Tensor:
        """lambda / (2 lambda - 1) + 1 / (2 atanh(1 - 2 lambda)) = 1 / (1 - e^-l) - 1 / l; near l = 0, where the two
        terms cancel, its series 1/2 + l/12 - l^3/720 + l^5/30240 (the Bernoulli numbers)."""
        lg = self.logits(params)
        small = lg.abs() < CB_MEAN_SERIES_BELOW
        safe = torch.where(small, torch.ones_like(lg), lg)
        exact = -1.0 / torch.expm1(-safe) - 1.0 / safe
        series = 0.5 + lg / 12 - lg.pow(3) / 720 + lg.pow(5) / 30240
        return torch.where(small, series, exact).to(params.dtype)

    def mode(self, params: Tensor) -> Tensor:
        return (self.logits(params) > 0).to(params.dtype)  # the density is monotone: its mode is an end point

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Inverse CDF: x = log(1 + u (e^l - 1)) / l, written stably for large |l|."""
        lg = self.logits(params)
        u = uniform(tuple(lg.shape), lg, generator)
        small = lg.abs() < 1e-4
        safe = torch.where(small, torch.ones_like(lg), lg)
        pos = 1.0 + torch.log(u + (1.0 - u) * torch.exp(-safe.clamp_min(0))) / safe  # l > 0: no overflow of e^l
        neg = torch.log1p(u * torch.expm1(safe.clamp_max(0))) / safe
        return torch.where(small, u, torch.where(lg > 0, pos, neg)).clamp(0.0, 1.0)


class Symmetric(Likelihood):
    """A density symmetric about its location (the Gaussians, Laplace): the mean and the mode are the location."""

    def mean(self, params: Tensor) -> Tensor:
        return self.location(params)

    def mode(self, params: Tensor) -> Tensor:
        return self.mean(params)


class GaussianOptions(StrictOptions):
    variance: float = Field(0.5, gt=0, description="the fixed variance of every value (0.5: loss.recon mse)")
    normalised: bool = Field(True, description="false: train on (x - mean)^2 / (2 variance) without the constant "
                             "0.5 log(2 pi variance) per value, as loss.recon mse does; evaluation always adds it")


class Gaussian(Symmetric):
    """N(x; mean, variance) per value with a fixed variance; the mean is the output activation of the decoder."""

    name = "gaussian"

    @property
    def variance(self) -> float:
        return self.options.variance

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        return 0.5 * (LOG_2PI + math.log(self.variance)) + self._squared(params, x)

    def _squared(self, params: Tensor, x: Tensor) -> Tensor:
        sq = self.location(params.float()).sub(x.float()).pow(2)
        # loss.recon mse (variance 1/2) divides by exactly 1: skip that pass over the image and its backward (x / 1.0
        # is x, bit for bit, and so is its gradient)
        return sq if 2.0 * self.variance == 1.0 else sq / (2.0 * self.variance)

    def loss(self, params: Tensor, x: Tensor) -> Tensor:
        return self.nll(params, x) if self.options.normalised else self._squared(params, x)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        loc = self.mean(params).float()
        return loc + math.sqrt(self.variance) * normal(tuple(loc.shape), loc, generator)


class LearnedVarianceOptions(StrictOptions):
    init_variance: float = Field(0.5, gt=0, description="the variance training starts from")
    min_variance: float = Field(1e-4, gt=0, description="the variance is kept at or above this")


class GaussianLearned(Symmetric):
    """N(x; mean, s^2) with one variance s^2 for all values, learned with the model (a parameter of the likelihood;
    the sigma-VAE of Rybkin et al. 2021 without its closed-form shortcut)."""

    name = "gaussian_learned"

    def __init__(self, options: LearnedVarianceOptions, **kw):
        super().__init__(options, **kw)
        self.log_variance = nn.Parameter(torch.tensor(math.log(options.init_variance)))

    def log_var(self) -> Tensor:
        return self.log_variance.float().clamp_min(math.log(self.options.min_variance))

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        lv = self.log_var()
        return 0.5 * (LOG_2PI + lv) + self.location(params.float()).sub(x.float()).pow(2) / (2.0 * lv.exp())

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        loc = self.mean(params).float()
        return loc + (0.5 * self.log_var()).exp() * normal(tuple(loc.shape), loc, generator)


class PerDimOptions(StrictOptions):
    min_variance: float = Field(1e-4, gt=0, description="variance = softplus(decoder output) + min_variance")


class GaussianPerDim(Symmetric):
    """N(x; mean, s^2) with a variance per value predicted by the decoder: 2 outputs per value (the mean, through
    the output activation, then softplus(.) + min_variance for the variance)."""

    name = "gaussian_per_dim"

    @classmethod
    def per_value(cls, options) -> int:
        return 2

    def _parts(self, params: Tensor) -> tuple[Tensor, Tensor]:
        p = self.split(params)  # (B, 2, C, *rest)
        return self.location(p[:, 0]), F.softplus(p[:, 1]) + self.options.min_variance

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        loc, var = self._parts(params)
        return 0.5 * (LOG_2PI + var.log()) + (x.float() - loc).pow(2) / (2.0 * var)

    def mean(self, params: Tensor) -> Tensor:
        return self.location(params.unflatten(1, (2, -1))[:, 0])

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        loc, var = self._parts(params)
        return loc + var.sqrt() * normal(tuple(loc.shape), loc, generator)


class LaplaceOptions(StrictOptions):
    scale: float = Field(0.5, gt=0, description="the fixed scale b of every value (0.5: the NLL is 2 |x - mean|)")


class Laplace(Symmetric):
    """Laplace(x; mean, b) per value with a fixed scale: an L1 reconstruction loss with its normaliser log(2b)."""

    name = "laplace"

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        b = self.options.scale
        return math.log(2.0 * b) + (x.float() - self.location(params.float())).abs() / b

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        loc = self.mean(params).float()
        u = uniform(tuple(loc.shape), loc, generator) - 0.5
        return loc - self.options.scale * u.sign() * torch.log1p(-2.0 * u.abs())


__all__ = ["Bernoulli", "ContinuousBernoulli", "Gaussian", "GaussianLearned", "GaussianPerDim", "Laplace", "Symmetric",
           "GaussianOptions", "LearnedVarianceOptions", "PerDimOptions", "LaplaceOptions", "cb_log_normaliser"]
