"""One VAE class for every seed's model: MLP, conv, spatial latent, attention over points, conditional.

Variants are parameters: the encoder/decoder layer lists, optional separate posterior heads, a latent scale
factor, the output activation and an optional condition. The architecture (shape checks, presets) is built in
`vaelab.model.build`; this file only runs it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.core.errors import DataError
from vaelab.model.distributions import DiagonalGaussian

OUTPUT_ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "identity": lambda t: t}


@dataclass
class VAEOutput:
    x_logits: torch.Tensor  # decoder output before the output activation, (B, *shape)
    x_hat: torch.Tensor  # after it
    posterior: DiagonalGaussian
    z: torch.Tensor  # the latent the decoder saw, in scaled units


def inject_condition(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """Concatenate a (B, K) condition to features (B, D) or as K constant channels of (B, C, *spatial)."""
    if c is None:
        return h
    if h.dim() == 2:
        return torch.cat([h, c.to(h.dtype)], dim=1)
    b, k = c.shape
    view = c.to(h.dtype).view(b, k, *([1] * (h.dim() - 2)))
    return torch.cat([h, view.expand(b, k, *h.shape[2:])], dim=1)


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
        condition_kind: str | None = None,
        condition_width: int | None = None,
        condition_after: int = 0,
        latent_quantizer: nn.Module | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.mu_head, self.logvar_head = heads if heads is not None else (None, None)
        self.latent_shape = tuple(latent_shape)
        self.input_shape = tuple(input_shape)
        self.latent_scale = float(latent_scale)
        self.output_activation = output_activation
        self._activate = OUTPUT_ACTIVATIONS[output_activation]
        self.condition_kind = condition_kind
        self.condition_width = condition_width
        self.condition_after = condition_after  # encoder layers (leading Flatten) before the condition joins
        self.latent_quantizer = latent_quantizer  # vaelab.model.quantize: applied to every latent the decoder sees

    # ----------------------------------------------------------------- condition
    @property
    def conditional(self) -> bool:
        return self.condition_kind is not None

    def condition_vector(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """Labels (B,) -> one-hot (B, K); vectors (B, K) pass through; None for unconditional models."""
        if not self.conditional:
            return None
        if y is None:
            raise DataError("this model is conditional: give labels (or condition vectors) with the inputs")
        if self.condition_kind == "label":
            y = y.long().view(-1)
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.condition_width):
                raise DataError(f"label out of range: the model has {self.condition_width} classes (0..{self.condition_width - 1})")
            return F.one_hot(y, self.condition_width).float()
        return y.float().view(y.shape[0], -1)

    # ------------------------------------------------------------------- encoder
    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> DiagonalGaussian:
        """Posterior q(z|x) in the decoder's units; `.mean * latent_scale` is the scaled latent."""
        h = x
        for i, layer in enumerate(self.encoder):
            if i == self.condition_after:
                h = inject_condition(h, c)
            h = layer(h)
        if self.condition_after >= len(self.encoder):
            h = inject_condition(h, c)
        if self.mu_head is not None:
            return DiagonalGaussian(self.mu_head(h), self.logvar_head(h))
        mean, logvar = torch.chunk(h, 2, dim=1)  # (B, 2C, ...) -> 2 x (B, C, ...)
        return DiagonalGaussian(mean, logvar)

    # ------------------------------------------------------------------- decoder
    def logits_from_units(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder output before the output activation for z in decoder units: latent quantizer, condition, decoder."""
        return self.decoder(inject_condition(self.quantize_latent(z), c))

    def decode_logits(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder output before the output activation, for a latent in scaled units."""
        return self.logits_from_units(z / self.latent_scale, c)

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self._activate(self.decode_logits(z, c))

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return self._activate(logits)

    # ------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, *, sample: bool = True) -> VAEOutput:
        posterior = self.encode(x, c)
        z = self.quantize_latent(posterior.sample() if sample else posterior.mode())  # decoder units
        logits = self.decoder(inject_condition(z, c))
        return VAEOutput(logits, self._activate(logits), posterior, z * self.latent_scale)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        c: torch.Tensor | None = None,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Decode n draws from the prior N(0, T^2 I), in the decoder's units (never divided by the scale)."""
        p = next(self.parameters())
        z = torch.randn((n, *self.latent_shape), generator=generator, device=p.device, dtype=p.dtype) * temperature
        return self._activate(self.logits_from_units(z, c))

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
