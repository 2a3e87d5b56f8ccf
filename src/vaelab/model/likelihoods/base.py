"""The decoder likelihood p(x | z) as an object: how many outputs the decoder gives per data value, the NLL, the
mean, the mode and a sample, all from the decoder's raw output.

Layout: for data (B, C, *rest) (flat data (B, D) has C = D), a likelihood with P parameters per value reads the
decoder output (B, P*C, *rest) as P blocks of C channels: block p holds parameter p of every channel
(`split` -> (B, P, C, *rest)). So a decoder ends at P times the data's channels, whatever its layers are.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from vaelab.core.registry import Registry
from vaelab.core.vocab import StrictOptions

OUTPUT_ACTIVATIONS: Registry = Registry("output activation")
OUTPUT_ACTIVATIONS.register("sigmoid", torch.sigmoid, doc="(0, 1): Bernoulli-style outputs, [0, 1] data")
OUTPUT_ACTIVATIONS.register("tanh", torch.tanh, doc="(-1, 1): [-1, 1] data")
OUTPUT_ACTIVATIONS.register("identity", lambda t: t, doc="unbounded outputs")

PROB_EPS = 1e-7  # probabilities are clamped to [eps, 1 - eps] where a decoder gives them directly


class NoOptions(StrictOptions):
    """This likelihood takes no options."""


class Likelihood(nn.Module):
    """p(x | params) for params = the decoder's output; every method works per element of x.

    Subclasses set `name`, `discrete` (a probability mass function over a finite support, not a density),
    `levels` (the support's size for discrete ones: 2 for Bernoulli, 256 for 8-bit), `uses_activation` (whether
    the model's output activation maps the decoder's output to the location parameter), and implement
    `per_value`, `nll`, `mean`, `mode`, `sample`.
    """

    name: ClassVar[str]
    discrete: ClassVar[bool] = False
    levels: ClassVar[int | None] = None
    uses_activation: ClassVar[bool] = True

    def __init__(self, options: StrictOptions, *, value_range: tuple[float, float] = (0.0, 1.0), activation: str = "identity"):
        super().__init__()
        self.options = options
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.activation = activation
        self._activate = OUTPUT_ACTIVATIONS.get(activation)
        self.params_per_value = self.per_value(options)

    # ----------------------------------------------------------------- shapes
    @classmethod
    def per_value(cls, options: StrictOptions) -> int:
        """Decoder outputs per data value (per data channel for images)."""
        return 1

    @classmethod
    def misfit(cls, value_range: tuple[float, float], bits: int | None) -> str | None:
        """Why data with this range (and 8-bit grid or not) cannot be modelled, with the fix; None when it fits."""
        return None

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The decoder output (per sample) this likelihood reads for data of per-sample `shape`."""
        return (shape[0] * self.params_per_value, *shape[1:])

    def split(self, params: Tensor) -> Tensor:
        """(B, P*C, *rest) -> (B, P, C, *rest), in float32 (the likelihood is computed in float32 under autocast)."""
        return params.float().unflatten(1, (self.params_per_value, -1))

    def location(self, raw: Tensor) -> Tensor:
        """The model's output activation applied to a location parameter (in raw's dtype)."""
        return self._activate(raw)

    # ------------------------------------------------------------ the density
    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        """-log p(x | params) in nats per element -> the shape of x."""
        raise NotImplementedError

    def loss(self, params: Tensor, x: Tensor) -> Tensor:
        """The per-element reconstruction term training minimises: the NLL, unless an option drops its constant."""
        return self.nll(params, x)

    def nll_per_sample(self, params: Tensor, x: Tensor) -> Tensor:
        """-log p(x | params) in nats per sample -> (B,). Params in any memory layout (channels-last from
        vaelab.model.layout's inference): made contiguous first, where the element-wise NLLs run fastest."""
        return self.nll(params.contiguous(), x).reshape(x.shape[0], -1).sum(dim=1)

    def mean(self, params: Tensor) -> Tensor:
        """E[x | params] -> (B, *shape): what reconstructions and samples show."""
        raise NotImplementedError

    def mode(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def support(self) -> Tensor | None:
        """The values a discrete likelihood puts mass on, in data units (None for densities)."""
        return None

    # -------------------------------------------------------------- reporting
    def describe(self) -> str:
        """The name with its options, e.g. `gaussian(variance=0.5, normalised=False)`."""
        opts = self.options.model_dump()
        return self.name + (f"({', '.join(f'{k}={v}' for k, v in opts.items())})" if opts else "")

    def extra_repr(self) -> str:
        return f"{self.describe()}, activation={self.activation}"


def uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None, eps: float = 1e-6) -> Tensor:
    """U(eps, 1 - eps) draws of `shape` on like's device (CPU generators draw on the CPU, then move)."""
    gen_device = generator.device if generator is not None else like.device
    u = torch.rand(shape, generator=generator, device=gen_device, dtype=torch.float32)
    return u.to(like.device).clamp(eps, 1.0 - eps)


def normal(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    gen_device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32).to(like.device)


def gumbel_argmax(logits: Tensor, dim: int, generator: torch.Generator | None) -> Tensor:
    """A draw from Categorical(logits) along `dim` (Gumbel-max), with an explicit generator."""
    u = uniform(tuple(logits.shape), logits, generator)
    return (logits - torch.log(-torch.log(u))).argmax(dim=dim)


def grid(value_range: tuple[float, float], levels: int, like: Tensor) -> Tensor:
    """The `levels` evenly spaced values of value_range, (levels,) float32."""
    lo, hi = value_range
    return torch.linspace(lo, hi, levels, device=like.device, dtype=torch.float32)


def level_values(index: Tensor, value_range: tuple[float, float], levels: int) -> Tensor:
    """Integer levels -> their values on the grid of value_range (exactly the values `grid` lists)."""
    return grid(value_range, levels, index)[index]


def to_index(x: Tensor, value_range: tuple[float, float], levels: int) -> Tensor:
    """Values on the grid of value_range -> integer levels 0..levels-1 (rounded, clamped)."""
    lo, hi = value_range
    return ((x.float() - lo) * ((levels - 1) / (hi - lo))).round().clamp(0, levels - 1).long()


LOG_2PI = math.log(2.0 * math.pi)

__all__ = ["Likelihood", "OUTPUT_ACTIVATIONS", "NoOptions", "PROB_EPS", "LOG_2PI", "uniform", "normal", "gumbel_argmax",
           "grid", "level_values", "to_index"]
