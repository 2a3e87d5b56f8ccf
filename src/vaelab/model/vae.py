"""One VAE class for every seed's model: MLP, conv, spatial latent, attention over points, conditional.

Variants are parameters: the encoder/decoder layer lists, optional separate posterior heads, a latent scale
factor, the decoder likelihood p(x|z) (which owns the output activation), an optional condition and latent
quantizer. The architecture (shape checks, presets) is built in `vaelab.model.build`; this file only runs it.

The decode family, from the latent to data:
    decoder_output(z_units, c)   the decoder's raw output (the likelihood's parameters), z in decoder units
    decode_params(z, c)          the same for z in scaled units (divided by latent_scale first)
    decode(z, c)                 the likelihood's mean for z in scaled units: what reconstructions show
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from vaelab.core.errors import DataError
from vaelab.model.conditions import Condition, make_condition
from vaelab.model.distributions import DiagonalGaussian
from vaelab.model.likelihoods import Likelihood, default_likelihood


class VAEOutput:
    """What `VAE.forward` returns. x_hat, the likelihood's mean, is computed on its first read when forward gives a
    function for it: a likelihood's NLL reads only x_params, so a training step whose loss terms never read x_hat
    skips that pass over the output (the function runs in the grad mode forward ran in; under autocast forward
    computes x_hat at once, so reading it later gives the same bits either way)."""

    def __init__(self, x_params: torch.Tensor, x_hat: torch.Tensor | Callable[[], torch.Tensor],
                 posterior: DiagonalGaussian, z: torch.Tensor):
        self.x_params = x_params  # decoder output = the likelihood's parameters, (B, P*C, *rest)
        self._x_hat = x_hat  # the likelihood's mean (B, *shape), or a function of nothing that computes it
        self.posterior = posterior
        self.z = z  # the latent the decoder saw, in scaled units

    @property
    def x_hat(self) -> torch.Tensor:
        if not isinstance(self._x_hat, torch.Tensor):
            self._x_hat = self._x_hat()
        return self._x_hat

    @property
    def x_logits(self) -> torch.Tensor:
        """Former name of `x_params` (the decoder output before the likelihood)."""
        return self.x_params

    def __repr__(self) -> str:
        return f"VAEOutput(x_params={tuple(self.x_params.shape)}, posterior={self.posterior}, z={tuple(self.z.shape)})"


def _deferred(fn: Callable[[torch.Tensor], torch.Tensor], t: torch.Tensor) -> Callable[[], torch.Tensor]:
    """fn(t) later, in the grad mode of now."""
    grad = torch.is_grad_enabled()

    def run() -> torch.Tensor:
        with torch.set_grad_enabled(grad):
            return fn(t)

    return run


def inject_condition(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """Concatenate a (B, K) condition to features (B, D) or as K constant channels of (B, C, *spatial)."""
    if c is None:
        return h
    if h.dim() == 2:
        return torch.cat([h, c.to(h.dtype)], dim=1)
    b, k = c.shape
    view = c.to(h.dtype).view(b, k, *([1] * (h.dim() - 2)))
    return torch.cat([h, view.expand(b, k, *h.shape[2:])], dim=1)


Step = Callable[[int, nn.Module, torch.Tensor], torch.Tensor]


def run_layers(layers: Sequence[nn.Module], h: torch.Tensor, c: torch.Tensor | None, at: int = 0,
               step: Step | None = None) -> torch.Tensor:
    """Run `layers` in order, joining the condition c before layer `at` (after the last when at >= len(layers)).

    step(i, layer, h) runs one layer (default: layer(h)); the shape checker passes its own to name failures.
    """
    for i, layer in enumerate(layers):
        if i == at:
            h = inject_condition(h, c)
        h = step(i, layer, h) if step is not None else layer(h)
    return inject_condition(h, c) if at >= len(layers) else h


class VAE(nn.Module):
    def __init__(
        self,
        encoder: nn.Sequential,
        decoder: nn.Sequential,
        *,
        latent_shape: tuple[int, ...],
        input_shape: tuple[int, ...],
        heads: tuple[nn.Module, nn.Module] | None = None,
        latent_scale: float = 1.0,
        output_activation: str = "sigmoid",
        likelihood: Likelihood | None = None,
        condition_kind: str | None = None,
        condition_width: int | None = None,
        condition_after: int = 0,
        latent_quantizer: nn.Module | None = None,
    ):
        """likelihood: p(x | decoder output); without one, auto's choice for `output_activation` (bernoulli for
        sigmoid, else the mse Gaussian). condition_after: encoder layers (a leading Flatten) before c joins."""
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.mu_head, self.logvar_head = heads if heads is not None else (None, None)
        self.latent_shape = tuple(latent_shape)
        self.input_shape = tuple(input_shape)
        self.latent_scale = float(latent_scale)
        self.likelihood = likelihood if likelihood is not None else default_likelihood(output_activation)
        self.condition: Condition | None = make_condition(condition_kind, condition_width)
        self.condition_after = condition_after
        self.latent_quantizer = latent_quantizer  # vaelab.model.quantize: applied to every latent the decoder sees

    @property
    def output_activation(self) -> str:
        return self.likelihood.activation

    # ----------------------------------------------------------------- condition
    @property
    def conditional(self) -> bool:
        return self.condition is not None

    @property
    def condition_kind(self) -> str | None:
        return None if self.condition is None else self.condition.name

    @property
    def condition_width(self) -> int | None:
        return None if self.condition is None else self.condition.width

    def condition_vector(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """Labels (B,) -> one-hot (B, K); vectors (B, K) pass through; None for unconditional models."""
        if self.condition is None:
            return None
        if y is None:
            raise DataError("this model is conditional: give labels (or condition vectors) with the inputs")
        return self.condition.vector(y)

    # ------------------------------------------------------------------- encoder
    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> DiagonalGaussian:
        """Posterior q(z|x) in the decoder's units; `.mean * latent_scale` is the scaled latent."""
        h = run_layers(self.encoder, x, c, self.condition_after)
        if self.mu_head is not None:
            return DiagonalGaussian(self.mu_head(h), self.logvar_head(h))
        mean, logvar = torch.chunk(h, 2, dim=1)  # (B, 2C, ...) -> 2 x (B, C, ...)
        return DiagonalGaussian(mean, logvar)

    # ------------------------------------------------------------------- decoder
    def decoder_output(self, z: torch.Tensor, c: torch.Tensor | None = None, *, quantize: bool = True) -> torch.Tensor:
        """The likelihood's parameters (B, P*C, *rest) for z in decoder units: latent quantizer, condition, decoder.

        quantize=False skips the model's latent quantizer (for z that is already quantized, or to compare bit widths).
        """
        return run_layers(self.decoder, self.quantize_latent(z) if quantize else z, c)

    def decode_params(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's parameters for a latent in scaled units."""
        return self.decoder_output(z / self.latent_scale, c)

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's mean for a latent in scaled units (B, *shape)."""
        return self.likelihood.mean(self.decode_params(z, c))

    # ------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, *, sample: bool = True) -> VAEOutput:
        posterior = self.encode(x, c)
        z = self.quantize_latent(posterior.sample() if sample else posterior.mode())  # decoder units
        params = self.decoder_output(z, c, quantize=False)  # z is quantized already
        lazy = not torch.is_autocast_enabled(params.device.type)
        x_hat = _deferred(self.likelihood.mean, params) if lazy else self.likelihood.mean(params)
        return VAEOutput(params, x_hat, posterior, z if self.latent_scale == 1.0 else z * self.latent_scale)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        c: torch.Tensor | None = None,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The likelihood's mean at n draws from the prior N(0, T^2 I), in the decoder's units (never divided by
        the scale)."""
        p = next(self.parameters())
        z = torch.randn((n, *self.latent_shape), generator=generator, device=p.device, dtype=p.dtype) * temperature
        return self.likelihood.mean(self.decoder_output(z, c))

    # -------------------------------------------------------------- quantization
    def quantize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The latent quantizer (model.quantize.latent) on decoder-unit z; identity without one."""
        return z if self.latent_quantizer is None else self.latent_quantizer(z)

    @torch.no_grad()
    def encode_integers(self, x: torch.Tensor, c: torch.Tensor | None = None):
        """Posterior means as integer codes with scale and offset (decoder units); needs a latent quantizer."""
        if self.latent_quantizer is None:
            raise DataError("this model has no latent quantizer: set model.quantize.latent to export integer latents")
        return self.latent_quantizer.to_integers(self.encode(x, c).mean)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
