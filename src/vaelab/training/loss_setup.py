"""The loss of one run: the config's term weights, the options the terms need, and the KL schedule."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from vaelab.core.config import Config, LossConfig
from vaelab.core.errors import ConfigError
from vaelab.core.vocab import LOSS_TERMS
from vaelab.training.losses import LossOptions, LossTerms, ReconKind, term_weights, weigh_terms
from vaelab.training.schedules import make_schedule


def recon_kind(lc: LossConfig, value_range: Sequence[float]) -> ReconKind:
    """`loss.recon`, with `auto` resolved from the data range: bce for [0, 1] data, mse otherwise."""
    lo, hi = value_range
    kind = lc.recon if lc.recon != "auto" else ("bce" if lo >= 0 and hi <= 1 else "mse")
    if kind == "bce" and (lo < 0 or hi > 1):
        raise ConfigError(f"loss.recon: bce needs data in [0, 1] but this data spans [{lo:g}, {hi:g}]; use loss.recon: mse")
    return kind


@dataclass
class LossSetup:
    """Everything the loss needs besides the batch, fixed for a run; call it as `setup(out, x, kl_scale)`."""

    weights: dict[str, float]  # {term: weight} of the terms switched on
    options: LossOptions
    schedule: Callable[[int, int], float]  # (step, total_steps) -> KL scale

    @classmethod
    def from_config(cls, cfg: Config, model, value_range: Sequence[float]) -> "LossSetup":
        """`model` gives the sample shape (terms such as SSIM need images) and its likelihood, whose NLL is the
        reconstruction term."""
        lc = cfg.loss
        lo, hi = value_range
        kind = recon_kind(lc, value_range)
        weights = term_weights(lc)
        for name in weights:
            problem = LOSS_TERMS.get(name).check(tuple(model.input_shape))
            if problem:
                raise ConfigError(problem)
        options = LossOptions(kind, kind == "bce" and model.output_activation == "sigmoid", lc.reduction,
                              lc.free_bits, lc.data_range or (hi - lo) or 1.0, model.likelihood)
        if lc.adversarial is not None:
            options = dataclasses.replace(options, critic=_critic(cfg, model, weights, options))
        if lc.perceptual is not None:
            from vaelab.training.perceptual import load_lpips

            net = load_lpips(lc.perceptual.backbone, lc.perceptual.linear, value_range)
            options = dataclasses.replace(options, perceptual=net.to(next(model.parameters()).device))
        return cls(weights, options, make_schedule(lc.kl_schedule.kind, **lc.kl_schedule.params()))

    @property
    def units(self) -> dict[str, str]:
        """{"loss", "recon", "kl": unit} of the logged terms, for the loss curves (the run's report and
        `vaelab.use.units.run_units` name the likelihood's variants in full)."""
        per_item = self.options.reduction == "sum"
        recon = "nats/item" if per_item else "nats/value (mean)"
        lik = self.options.likelihood
        opts = getattr(lik, "options", None)
        if getattr(lik, "name", "") == "gaussian" and not getattr(opts, "normalised", True):  # loss.recon: mse
            recon = (("summed squared error/item" if per_item else "squared error/value (mean)") if opts.variance == 0.5
                     else f"{recon} less the Gaussian constant")
        plain = self.weights == {"recon": 1.0, "kl": 1.0}
        return {"loss": recon if plain else "weighted sum of the terms", "recon": recon,
                "kl": "nats/item" if per_item else "nats/latent dim (mean)"}

    def __call__(self, out, x: Tensor, kl_scale: float) -> LossTerms:
        return weigh_terms(out, x, self.weights, self.options, kl_scale)

    def shares(self, terms: LossTerms, kl_scale: float) -> Tensor:
        """Each term's share of `terms.total` (weight, times the KL schedule for scheduled terms, times the penalty
        of its batch mean) in `weights` order -> (T,); they add up to the total the optimizer minimised."""
        parts = []
        for name, weight in self.weights.items():
            term = LOSS_TERMS.get(name)
            coef = weight * kl_scale if term.scheduled else weight
            parts.append(coef * term.penalty(terms.terms[name].detach().float()))
        return torch.stack(parts)

    # stateful terms (the adversarial term's discriminator): stepped with the model, saved with the run
    def after_step(self) -> None:
        if self.options.critic is not None:
            self.options.critic.after_step()

    def state_dict(self) -> dict | None:
        return None if self.options.critic is None else {"adversarial": self.options.critic.state_dict()}

    def load_state_dict(self, state: dict | None) -> None:
        if self.options.critic is not None and state and "adversarial" in state:
            self.options.critic.load_state_dict(state["adversarial"])


def _critic(cfg: Config, model, weights: dict[str, float], options: LossOptions):
    """The discriminator of loss.adversarial, on the model's device; its adaptive weight balances it against
    the weighted reconstruction term."""
    from vaelab.training.adversarial import Critic, last_layer_weight

    recon = LOSS_TERMS.get("recon").value
    alpha = weights.get("recon", 0.0)
    try:
        last = last_layer_weight(model)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    adv, side = cfg.loss.adversarial, min(model.input_shape[1:])
    if side // 2 ** adv.layers - 2 < 1:  # the PatchGAN's output side: each stride-2 layer halves, two 4x4 convs take 2
        fit = max((n for n in range(1, 7) if side // 2 ** n - 2 >= 1), default=None)
        raise ConfigError(f"loss.adversarial.layers: {adv.layers} layers need images of at least {3 * 2 ** adv.layers} px, "
                          f"these are {side} px: " + (f"use layers: {fit}" if fit else "the images are too small for a PatchGAN"))
    return Critic(cfg.loss.adversarial, model.input_shape[0], last, lambda out, x: alpha * recon(out, x, options).mean(),
                  cfg.train.lr, last.device)
