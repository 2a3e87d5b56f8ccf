"""The adversarial loss term's state: a PatchGAN discriminator, its optimizer and its step count.

As in the latent-diffusion autoencoder (Rombach et al. 2022, taming-transformers' `VQLPIPSWithDiscriminator`):
- the discriminator is pix2pix's PatchGAN (Isola et al. 2017): stride-2 4x4 convolutions with BatchNorm and
  LeakyReLU(0.2), one logit per overlapping patch;
- the generator's term is `weight x lambda x g_loss(D(x_hat))` with the adaptive weight
  `lambda = |grad_L recon| / (|grad_L g_loss| + 1e-4)` (clamped to [0, 1e4]) at the decoder's last layer L, so the
  adversarial gradient never outweighs the reconstruction's;
- before optimizer step `start_step` the term is 0 and the discriminator does not train;
- after each optimizer step of the VAE the discriminator takes one Adam step of its own (own lr and betas) on the
  last micro-batch's real images and detached reconstructions, hinge or non-saturating.
Everything (weights, optimizer, step count, last adaptive weight) is in the run's checkpoint, so a resumed run
continues exactly. The term itself is registered in vaelab.training.losses (`adversarial`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaelab.core.vocab import ADVERSARIAL_LOSSES


@dataclass(frozen=True)
class AdversarialLoss:
    discriminator: Callable[[Tensor, Tensor], Tensor]  # (real logits, fake logits) -> scalar
    generator: Callable[[Tensor], Tensor]  # fake logits (B, 1, h, w) -> per sample (B,)


ADVERSARIAL_LOSSES.register("hinge", AdversarialLoss(
    lambda real, fake: 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()),
    lambda fake: -fake.flatten(1).mean(1)), doc="hinge (Lim and Ye 2017; LDM's default)")
ADVERSARIAL_LOSSES.register("non_saturating", AdversarialLoss(
    lambda real, fake: 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean()),
    lambda fake: F.softplus(-fake).flatten(1).mean(1)), doc="non-saturating GAN loss (Goodfellow et al. 2014)")


class PatchDiscriminator(nn.Sequential):
    """pix2pix's NLayerDiscriminator: (B, C, H, W) -> (B, 1, h, w) patch logits."""

    def __init__(self, in_channels: int, channels: int = 64, layers: int = 3):
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < layers else 1
            mods += [nn.Conv2d(channels * prev, channels * mult, 4, stride, 1, bias=False),
                     nn.BatchNorm2d(channels * mult), nn.LeakyReLU(0.2, True)]
        mods.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        super().__init__(*mods)
        for m in self.modules():  # pix2pix's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)


def last_layer_weight(model: nn.Module) -> nn.Parameter:
    """The decoder's last weight (the adaptive weight's gradients are taken there)."""
    weights = [p for name, p in model.decoder.named_parameters() if name.endswith("weight") and p.dim() > 1]
    if not weights:
        raise ValueError("loss.adversarial: the decoder has no weight matrix or kernel to take the adaptive weight at")
    return weights[-1]


class Critic:
    """The discriminator side of the adversarial term; see the module docstring."""

    def __init__(self, cfg, in_channels: int, last_layer: nn.Parameter, nll: Callable[[Any, Tensor], Tensor],
                 lr: float, device: torch.device):
        self.cfg, self.last_layer, self.nll = cfg, last_layer, nll
        self.loss: AdversarialLoss = ADVERSARIAL_LOSSES.get(cfg.loss)
        self.net = PatchDiscriminator(in_channels, cfg.channels, cfg.layers).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr or lr, betas=tuple(cfg.betas))
        self.steps = 0  # VAE optimizer steps seen (the start_step clock)
        self.weight = 0.0  # the last adaptive weight (used where no gradient can be taken: evaluation)
        self.d_loss = float("nan")  # the last discriminator loss (for the metrics)
        self._pending: tuple[Tensor, Tensor] | None = None

    @property
    def active(self) -> bool:
        return self.steps >= self.cfg.start_step

    def generator_term(self, out, x: Tensor) -> Tensor:
        """Per sample (B,): adaptive weight x g_loss(D(x_hat)); 0 before start_step."""
        if not self.active:
            return out.x_hat.new_zeros(out.x_hat.shape[0])
        g = self.loss.generator(self.net(out.x_hat.float()))  # (B,)
        if torch.is_grad_enabled() and out.x_hat.requires_grad:
            self._pending = (x.detach(), out.x_hat.detach())  # the discriminator's next batch
            if self.cfg.adaptive:
                self.weight = self._adaptive_weight(self.nll(out, x), g.mean())
        return (self.weight if self.cfg.adaptive else 1.0) * g

    def _adaptive_weight(self, nll: Tensor, g: Tensor) -> float:
        gn = torch.autograd.grad(nll, self.last_layer, retain_graph=True)[0].norm()
        gg = torch.autograd.grad(g, self.last_layer, retain_graph=True)[0].norm()
        return float((gn / (gg + 1e-4)).clamp(0.0, 1e4))

    def after_step(self) -> None:
        """Called after every VAE optimizer step: the discriminator's own step on the last micro-batch."""
        self.steps += 1
        pending, self._pending = self._pending, None
        if pending is None or not self.active:
            return
        real, fake = pending
        self.optimizer.zero_grad(set_to_none=True)  # also drops what the generator's backward left in D
        loss = self.loss.discriminator(self.net(real.float()), self.net(fake.float()))
        loss.backward()
        self.optimizer.step()
        self.d_loss = float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "steps": self.steps,
                "weight": self.weight, "d_loss": self.d_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps, self.weight, self.d_loss = int(state["steps"]), float(state["weight"]), float(state["d_loss"])


__all__ = ["Critic", "PatchDiscriminator", "AdversarialLoss", "last_layer_weight"]
